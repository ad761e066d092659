//! Fuzz target `control_request`: its body is `hv::fuzz_entry::control_request` (see that function for what it feeds where).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv::fuzz_entry::control_request(data));
