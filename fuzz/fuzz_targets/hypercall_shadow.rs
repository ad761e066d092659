//! Fuzz target `hypercall_shadow`: its body is `hv::fuzz_entry::hypercall_shadow` (see that function for what it feeds where).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv::fuzz_entry::hypercall_shadow(data));
