//! Fuzz target `snapshot_file`: its body is `hv::fuzz_entry::snapshot_file` (see that function for what it feeds where).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv::fuzz_entry::snapshot_file(data));
