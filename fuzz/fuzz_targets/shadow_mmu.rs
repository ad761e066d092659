//! Fuzz target `shadow_mmu`: its body is `shadow_mmu::fuzz_entry::shadow_sequence` (see that function for what it feeds where).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shadow_mmu::fuzz_entry::shadow_sequence(data));
