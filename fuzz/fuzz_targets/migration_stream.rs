//! Fuzz target `migration_stream`: its body is `hv::fuzz_entry::migration_stream` (see that function for what it feeds where).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv::fuzz_entry::migration_stream(data));
