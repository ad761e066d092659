//! Hostile-file tests for the ELF checks: each builds a small broken kernel by hand.

use super::*;

const RAM: u64 = 64 << 20;
/// The address the test kernels' segments must end below, as `parse_kernel` takes it.
const LIMIT: PseudoPhys = PseudoPhys::new(RAM);
const PHYS: u64 = 0x20_0000;
const VIRT: u64 = KERNEL_VIRT_BASE + PHYS;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// One program header for the test builder.
#[derive(Clone, Copy)]
struct Ph {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

fn text_segment() -> Ph {
    Ph { kind: 1, flags: PF_R | PF_X, offset: 0x1000, vaddr: VIRT, paddr: PHYS, filesz: 0x100, memsz: 0x100 }
}

/// Builds an ELF64 x86-64 executable with `phdrs` and 0x2000 bytes of file (more if
/// the program headers need it).
fn build(entry: u64, phdrs: &[Ph]) -> Vec<u8> {
    let mut f = vec![0u8; (64 + phdrs.len() * 56).max(0x2000)];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // little-endian
    f[6] = 1; // EV_CURRENT
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
    f[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    for (i, p) in phdrs.iter().enumerate() {
        let o = 64 + i * 56;
        f[o..o + 4].copy_from_slice(&p.kind.to_le_bytes());
        f[o + 4..o + 8].copy_from_slice(&p.flags.to_le_bytes());
        for (j, v) in [p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, 0x1000].iter().enumerate() {
            f[o + 8 + j * 8..o + 16 + j * 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    f
}

#[test]
fn the_built_in_guest_kernel_is_accepted() {
    let image = parse_kernel(crate::boot::guest_image::PV_GUEST_ELF, LIMIT).expect("pv-guest must load");
    assert!(image.segments.len() >= 2);
    assert!(image.segments.iter().any(|s| s.executable && !s.writable), "text is read-execute");
    assert!(image.segments.iter().all(|s| !(s.executable && s.writable)), "no segment is W+X");
}

#[test]
fn a_well_formed_minimal_kernel_is_accepted() {
    let image = parse_kernel(&build(VIRT, &[text_segment()]), LIMIT).unwrap();
    assert_eq!(image.entry, GuestVirt::new(VIRT));
    assert_eq!(image.segments[0].paddr, PseudoPhys::new(PHYS));
}

#[test]
fn hostile_elf_text_file_is_not_elf() {
    assert_eq!(parse_kernel(b"# hv\n\nA paravirtual hypervisor on KVM, built for teaching.\n".repeat(4).as_slice(), LIMIT), Err(ElfError::NotElf));
    assert_eq!(parse_kernel(b"", LIMIT), Err(ElfError::NotElf));
}

#[test]
fn hostile_elf_shorter_than_the_header_is_refused() {
    assert_eq!(parse_kernel(b"\x7fELF\x02\x01", LIMIT), Err(ElfError::TooShort { len: 6 }));
}

#[test]
fn hostile_elf_truncated_real_kernel_is_refused() {
    let full = crate::boot::guest_image::PV_GUEST_ELF;
    let cut = &full[..full.len() / 8];
    assert!(matches!(parse_kernel(cut, LIMIT), Err(ElfError::SegmentDataOutsideFile { .. })), "{:?}", parse_kernel(cut, LIMIT));
    // Cut inside the program header table.
    assert!(matches!(parse_kernel(&full[..100], LIMIT), Err(ElfError::Malformed(_))));
}

#[test]
fn hostile_elf_wrong_class_endianness_machine_and_type_are_refused() {
    let good = build(VIRT, &[text_segment()]);
    let mut f = good.clone();
    f[4] = 1;
    assert_eq!(parse_kernel(&f, LIMIT), Err(ElfError::WrongClass));
    let mut f = good.clone();
    f[5] = 2;
    assert_eq!(parse_kernel(&f, LIMIT), Err(ElfError::WrongEndian));
    let mut f = good.clone();
    f[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    assert!(matches!(parse_kernel(&f, LIMIT), Err(ElfError::WrongMachine { machine: 183, .. })));
    let mut f = good;
    f[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    assert!(matches!(parse_kernel(&f, LIMIT), Err(ElfError::NotExecutable { .. })));
}

#[test]
fn hostile_elf_no_loadable_segment_is_refused() {
    let note = Ph { kind: 4, ..text_segment() }; // PT_NOTE
    assert_eq!(parse_kernel(&build(VIRT, &[note]), LIMIT), Err(ElfError::NoLoadableSegments));
    assert_eq!(parse_kernel(&build(VIRT, &[]), LIMIT), Err(ElfError::NoLoadableSegments));
}

#[test]
fn hostile_elf_segment_past_the_end_of_ram_is_refused() {
    let big = Ph { memsz: RAM, ..text_segment() };
    assert!(matches!(parse_kernel(&build(VIRT, &[big]), LIMIT), Err(ElfError::SegmentOutsideRam { .. })));
}

#[test]
fn hostile_elf_segment_whose_size_wraps_the_address_space_is_refused() {
    let wrap = Ph { memsz: u64::MAX - 0x1000, ..text_segment() };
    assert!(matches!(parse_kernel(&build(VIRT, &[wrap]), LIMIT), Err(ElfError::SegmentOutsideRam { .. })));
}

#[test]
fn hostile_elf_segment_over_the_boot_info_page_is_refused() {
    let low = Ph { paddr: 0x2000, vaddr: KERNEL_VIRT_BASE + 0x2000, ..text_segment() };
    let err = parse_kernel(&build(KERNEL_VIRT_BASE + 0x2000, &[low]), LIMIT).unwrap_err();
    assert!(matches!(err, ElfError::SegmentInReservedArea { .. }));
    assert!(err.to_string().contains("reserves"), "{err}");
}

#[test]
fn hostile_elf_segment_linked_at_the_wrong_virtual_address_is_refused() {
    let wrong = Ph { vaddr: 0x40_0000, ..text_segment() };
    assert!(matches!(parse_kernel(&build(0x40_0000, &[wrong]), LIMIT), Err(ElfError::WrongVirtualAddress { .. })));
}

#[test]
fn hostile_elf_overlapping_segments_are_refused() {
    let data = Ph { flags: PF_R | PF_W, offset: 0x1000, filesz: 0x10, memsz: 0x10, paddr: PHYS + 0x80, vaddr: VIRT + 0x80, ..text_segment() };
    assert_eq!(
        parse_kernel(&build(VIRT, &[text_segment(), data]), LIMIT),
        Err(ElfError::SegmentsOverlap { first: 0, second: 1 })
    );
}

#[test]
fn hostile_elf_file_data_past_the_end_of_file_is_refused() {
    let past = Ph { offset: 0x1f00, filesz: 0x200, memsz: 0x200, ..text_segment() };
    assert!(matches!(parse_kernel(&build(VIRT, &[past]), LIMIT), Err(ElfError::SegmentDataOutsideFile { .. })));
    let wrap = Ph { offset: u64::MAX, filesz: 2, memsz: 2, ..text_segment() };
    assert!(matches!(parse_kernel(&build(VIRT, &[wrap]), LIMIT), Err(ElfError::SegmentDataOutsideFile { .. })));
}

#[test]
fn hostile_elf_more_file_bytes_than_memory_is_refused() {
    let odd = Ph { filesz: 0x200, memsz: 0x100, ..text_segment() };
    assert!(matches!(parse_kernel(&build(VIRT, &[odd]), LIMIT), Err(ElfError::FileSizeExceedsMemSize { .. })));
}

#[test]
fn hostile_elf_entry_point_outside_the_code_is_refused() {
    assert_eq!(
        parse_kernel(&build(VIRT + 0x5000, &[text_segment()]), LIMIT),
        Err(ElfError::EntryOutsideSegments { entry: GuestVirt::new(VIRT + 0x5000) })
    );
    // Inside a segment, but one that is not executable.
    let data = Ph { flags: PF_R | PF_W, ..text_segment() };
    assert!(matches!(parse_kernel(&build(VIRT, &[data]), LIMIT), Err(ElfError::EntryOutsideSegments { .. })));
}

#[test]
fn hostile_elf_huge_program_header_count_is_refused_without_reading_past_the_file() {
    let mut f = build(VIRT, &[text_segment()]);
    f[56..58].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(matches!(parse_kernel(&f, LIMIT), Err(ElfError::Malformed(_))));
}

#[test]
fn hostile_elf_empty_segment_inside_the_text_page_gets_no_page() {
    // Legal ELF: a zero-size writable segment whose address falls in the text's page.
    let empty = Ph { flags: PF_R | PF_W, offset: 0, filesz: 0, memsz: 0, paddr: PHYS + 0x800, vaddr: VIRT + 0x800, ..text_segment() };
    let image = parse_kernel(&build(VIRT, &[text_segment(), empty]), LIMIT).expect("an empty segment is allowed");
    let (start, end) = image.segments[1].phys_pages();
    assert_eq!(start, end, "it covers no page, so nothing is mapped with its permissions");
    assert_eq!(image.segments[0].phys_pages(), (PseudoPhys::new(PHYS), PseudoPhys::new(PHYS + 0x1000)));
}

/// `count` one-page bss segments side by side from PHYS (the first executable), each
/// with its own program header; `overlap_last` moves the last one onto the first.
fn many_segments(count: usize, overlap_last: bool) -> Vec<u8> {
    let phdrs: Vec<Ph> = (0..count as u64)
        .map(|i| {
            let page = if overlap_last && i + 1 == count as u64 { 0 } else { i * 0x1000 };
            let flags = if i == 0 { PF_R | PF_X } else { PF_R | PF_W };
            Ph { kind: 1, flags, offset: 0, vaddr: VIRT + page, paddr: PHYS + page, filesz: 0, memsz: 0x1000 }
        })
        .collect();
    build(VIRT, &phdrs)
}

#[test]
fn hostile_elf_65535_program_headers_are_checked_without_comparing_every_pair() {
    // The most an ELF header can announce. Comparing every pair of segments took about
    // three seconds here; sorting them takes milliseconds (no timing is asserted: the
    // test only has to finish).
    let limit = PseudoPhys::new(1 << 30);
    let image = parse_kernel(&many_segments(usize::from(u16::MAX), false), limit).expect("disjoint segments load");
    assert_eq!(image.segments.len(), usize::from(u16::MAX));
    assert_eq!(
        parse_kernel(&many_segments(usize::from(u16::MAX), true), limit),
        Err(ElfError::SegmentsOverlap { first: 0, second: usize::from(u16::MAX) - 1 }),
        "the last segment lands on the first one's page"
    );
}

#[test]
fn hostile_elf_overlap_is_found_whatever_the_order() {
    let seg = |page: u64, pages: u64| Ph { flags: PF_R | PF_W, offset: 0, filesz: 0, memsz: pages * 0x1000, vaddr: VIRT + page * 0x1000, paddr: PHYS + page * 0x1000, ..text_segment() };
    // A long segment hiding a short one that starts after a segment in between.
    let phdrs = [text_segment(), seg(5, 1), seg(1, 10), seg(12, 1)];
    assert_eq!(parse_kernel(&build(VIRT, &phdrs), LIMIT), Err(ElfError::SegmentsOverlap { first: 1, second: 2 }));
    let disjoint = [seg(12, 1), text_segment(), seg(1, 10), seg(11, 1)];
    assert!(parse_kernel(&build(VIRT, &disjoint), LIMIT).is_ok());
}
