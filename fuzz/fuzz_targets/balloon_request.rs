//! Fuzz target `balloon_request`: its body is `backend_drivers::fuzz_entry::balloon_request` (see that function for what it feeds where).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| backend_drivers::fuzz_entry::balloon_request(data));
