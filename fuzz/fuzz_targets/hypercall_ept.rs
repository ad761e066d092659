//! Fuzz target `hypercall_ept`: its body is `hv::fuzz_entry::hypercall_ept` (see that function for what it feeds where).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv::fuzz_entry::hypercall_ept(data));
