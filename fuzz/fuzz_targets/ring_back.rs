//! Fuzz target `ring_back`: its body is `backend_drivers::fuzz_entry::ring_back` (see that function for what it feeds where).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| backend_drivers::fuzz_entry::ring_back(data));
