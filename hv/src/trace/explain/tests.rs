use super::*;

/// Lines as hv's text trace writes them (taken from real runs).
const SHADOW_TRACE: &str = "\
00001 boot       entry=0xffffffff80200000 mem=64MiB mmu=shadow segments=3 cmdline=[\"selftest\"]
00002 shadow     root built guest=0x3c00000 shadow=0x200000000
00003 console    doorbell woke the backend (count=1)
00004 console    pop request id=0: write \"selftest: ok\\n\"
00005 console    push response id=0: 41 bytes
00006 console    publish responses: notify guest (upcall)
00011 exit       io-out port=0x600
00012 hypercall  nop() = 0
00017 exit       io-out port=0x600
00018 hypercall  nop() = 0
00053 exit       mmio-write gpa=0x101c08800
00054 pt-write   trapped store machine=0x101c08800 entry=0x3c08800 value=0x3c01003
00055 shadow     sync entry=0x3c08800 value=0x3c01003 shadows=0
00866 flush      KVM told to forget cached translations (memslot re-registered)
00900 hypercall  set_cr3(root=0x3c10000) = 0
00901 hypercall  mmu_update(gpa=0x3c000, count=4) = -EINVAL
00902 hypercall  unknown_0x7777(0x0, 0x0, 0x0, 0x0) = -ENOSYS
06148 port       out port=0x600 size=1 (no device: dropped)
14355 stop       shutdown code=0
";

#[test]
fn each_line_of_a_real_trace_gets_its_kind() {
    let kinds: Vec<Kind> = SHADOW_TRACE.lines().map(classify).collect();
    use Kind::*;
    assert_eq!(
        kinds,
        [
            Boot,
            ShadowRootBuilt,
            Doorbell,
            RequestPopped,
            ResponsePushed,
            PublishedNotified,
            HypercallExit,
            Nop,
            HypercallExit,
            Nop,
            MmioWriteExit,
            PtWrite,
            ShadowSync,
            Flush,
            SetCr3,
            RefusedHypercall,
            UnknownHypercall,
            UnhandledPort,
            Stop
        ]
    );
}

#[test]
fn device_and_exit_details_are_told_apart() {
    assert_eq!(classify("00010 block      grant check gref=3 write: REFUSED not-granted"), Kind::GrantRefused);
    assert_eq!(classify("00010 block      grant check gref=3 read: ok gpa=0x5000"), Kind::GrantOk);
    assert_eq!(classify("00010 console    publish responses: guest not waiting, no upcall"), Kind::PublishedSuppressed);
    assert_eq!(classify("00010 exit       io-out port=0x701"), Kind::DoorbellExit);
    assert_eq!(classify("00010 exit       io-out port=0x80"), Kind::OtherPortExit);
    assert_eq!(classify("00010 trace-cut  the trace reached --trace-max 5 events; nothing more is recorded"), Kind::Cut);
}

#[test]
fn the_explanation_follows_only_the_first_line_of_each_kind() {
    let mut out = Vec::new();
    let summary = explain(SHADOW_TRACE.as_bytes(), &mut out, false).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(summary.lines, 19);
    assert_eq!(summary.kinds[&Kind::Nop], 2);
    // Every trace line is there, and the nop explanation appears once, after the first nop.
    for line in SHADOW_TRACE.lines() {
        assert!(text.contains(line), "{line} is printed");
    }
    let nop_help = &explanation(Kind::Nop)[..40];
    assert_eq!(text.matches(nop_help).count(), 1);
    let first_nop = text.find("00012 hypercall").unwrap();
    assert!(text[first_nop..].find("    ↳ The null hypercall").unwrap() < text[first_nop..].find("00017").unwrap());
    assert!(text.contains("trapped page-table") || text.contains("page-table writes trap"), "the mmio-write exit is explained as a trapped page-table write");
}

#[test]
fn first_only_prints_a_glossary_of_the_trace() {
    let mut out = Vec::new();
    explain(SHADOW_TRACE.as_bytes(), &mut out, true).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("00012 hypercall") && !text.contains("00018 hypercall"), "only the first nop line");
}

#[test]
fn every_kind_is_explained_in_words() {
    use Kind::*;
    for kind in [Boot, Restore, HypercallExit, DoorbellExit, MmioWriteExit, Flush, ShadowSync, GrantRefused, Cut, Unknown] {
        assert!(explanation(kind).split_whitespace().count() >= 15, "{kind:?}");
    }
}

#[test]
fn hostile_escape_sequences_in_a_trace_file_never_reach_the_terminal() {
    let evil = "00001 hypercall  console_write(gpa=0x1, len=3) = 3 \"\x1b]52;c;ZXZpbA==\x07\x1b[2J\u{9b}31m\"\n";
    let mut out = Vec::new();
    explain(evil.as_bytes(), &mut out, false).unwrap();
    assert!(!out.iter().any(|&b| b == 0x1b || b == 0x07), "no ESC or BEL in the output");
    assert!(!String::from_utf8(out).unwrap().contains('\u{9b}'), "no C1 CSI either");
}

#[test]
fn hostile_a_file_without_newlines_is_read_in_bounded_lines() {
    let huge = vec![b'a'; MAX_LINE_BYTES * 3];
    let mut out = Vec::new();
    let summary = explain(&huge[..], &mut out, false).unwrap();
    assert_eq!((summary.lines, summary.cut_lines), (1, 1));
    assert!(out.len() < MAX_LINE_BYTES + 4096, "the printed line is cut to the bound");
}

#[test]
fn hostile_bytes_that_are_not_utf8_are_shown_not_fatal() {
    let mut out = Vec::new();
    let summary = explain(&b"00001 \xff\xfe boot\n\x00\x01\n"[..], &mut out, false).unwrap();
    assert_eq!(summary.lines, 2);
    assert_eq!(summary.kinds.get(&Kind::Unknown), Some(&2));
}
