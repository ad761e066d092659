//! Fuzz target `record_log`: its body is `hv::fuzz_entry::record_log` (see that function for what it feeds where).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv::fuzz_entry::record_log(data));
