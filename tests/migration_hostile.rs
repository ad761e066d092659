//! Hostile peers of a live migration: what `hv run --incoming` does with a stream from
//! another program, another version, another guest size, a stream cut short or broken,
//! and what a source does when its destination hangs up. Each is refused with a message
//! naming the problem, on both sides where both are hv; no half-received guest runs,
//! and a source's guest runs on.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use common::background::Background;
use common::Outcome;
use hv::migration::stream::{kernel_identity, Header, PageData, Record, Reply};
use pv_abi::addr::PseudoFrame;
use pv_abi::MmuMode;

/// A destination `hv run --incoming` and a connection to it.
fn destination(extra: &[&str]) -> (Background, TcpStream) {
    let mut args = vec!["run", "--incoming", "127.0.0.1:0"];
    args.extend(extra);
    let mut dst = Background::start(&args);
    let port = dst.listening_port();
    let conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    (dst, conn)
}

/// The header a real source of the built-in guest with 64 MiB would send.
fn good_header() -> Header {
    Header { ram_bytes: 64 << 20, mode: MmuMode::Ept, kernel: kernel_identity(hv::boot::guest_image::PV_GUEST_ELF) }
}

/// Sends `bytes` then reads the destination's answer (`None` if it just hung up).
fn send_and_read_reply(conn: &mut TcpStream, bytes: &[u8]) -> Option<Reply> {
    let _ = conn.write_all(bytes);
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut replies = Vec::new();
    let _ = conn.read_to_end(&mut replies);
    let mut r = &replies[..];
    let mut last = None;
    while let Ok(reply) = Reply::read(&mut r) {
        last = Some(reply);
    }
    last
}

/// Expects the destination to have refused with `text` and ended with an error saying it.
fn refused(reply: Option<Reply>, dst: Outcome, text: &str) {
    match reply {
        Some(Reply::Refuse(why)) => assert!(why.contains(text), "the refusal says '{why}', not '{text}'"),
        other => panic!("expected a refusal naming '{text}', got {other:?}\n{}", dst.stderr),
    }
    dst.expect_code(1);
    dst.expect(dst.stderr.contains(text), &format!("the destination's error names '{text}'"));
}

fn header_then(records: &[Record]) -> Vec<u8> {
    let mut b = Vec::new();
    good_header().write(&mut b).unwrap();
    // The destination's Accept comes back after the header; records follow regardless.
    for r in records {
        r.write(&mut b).unwrap();
    }
    b
}

#[test]
fn hostile_a_stream_from_another_program_is_refused() {
    require_kvm!();
    let (dst, mut conn) = destination(&[]);
    let reply = send_and_read_reply(&mut conn, b"GET / HTTP/1.1\r\nHost: hv\r\n\r\n0123456789abcdef");
    refused(reply, dst.finish(), "not an hv migration stream");
}

#[test]
fn hostile_another_stream_version_is_refused() {
    require_kvm!();
    let (dst, mut conn) = destination(&[]);
    let mut b = Vec::new();
    good_header().write(&mut b).unwrap();
    b[8..12].copy_from_slice(&7u32.to_le_bytes());
    refused(send_and_read_reply(&mut conn, &b), dst.finish(), "migration stream version 7, this hv speaks version 3");
}

#[test]
fn hostile_another_kernel_is_refused() {
    require_kvm!();
    let (dst, mut conn) = destination(&[]);
    let mut b = Vec::new();
    Header { kernel: 0x1234, ..good_header() }.write(&mut b).unwrap();
    refused(send_and_read_reply(&mut conn, &b), dst.finish(), "the source runs another kernel");
}

#[test]
fn hostile_a_truncated_stream_is_refused_and_no_guest_runs() {
    require_kvm!();
    let (dst, mut conn) = destination(&[]);
    let page = PageData::Data(Box::new([0x5a; 4096]));
    let mut b = header_then(&[Record::Pages { round: 0, pages: vec![(PseudoFrame::new(300), page)] }]);
    b.truncate(b.len() - 1000);
    let reply = send_and_read_reply(&mut conn, &b);
    let dst = dst.finish();
    dst.expect(dst.stdout.is_empty(), "no guest ran");
    refused(reply, dst, "truncated: inside a page");
}

#[test]
fn hostile_a_page_outside_the_guest_is_refused() {
    require_kvm!();
    let (dst, mut conn) = destination(&[]);
    let b = header_then(&[Record::Pages { round: 0, pages: vec![(PseudoFrame::new(1 << 40), PageData::Zero)] }]);
    refused(send_and_read_reply(&mut conn, &b), dst.finish(), "outside the guest");
}

#[test]
fn hostile_a_state_that_does_not_decode_is_refused() {
    require_kvm!();
    let (dst, mut conn) = destination(&[]);
    let b = header_then(&[
        Record::Pages { round: 0, pages: vec![(PseudoFrame::new(300), PageData::Zero)] },
        Record::EndOfRound { round: 0, pages: 1 },
        Record::State(vec![0xff; 64]),
        Record::Done { total_pages: 1 },
    ]);
    let reply = send_and_read_reply(&mut conn, &b);
    let dst = dst.finish();
    dst.expect(dst.stdout.is_empty(), "no guest ran");
    refused(reply, dst, "the VM state does not decode");
}

#[test]
fn hostile_a_destination_with_another_ram_size_is_refused_on_both_sides_and_the_guest_runs_on() {
    require_kvm!();
    let mut dst = Background::start(&["run", "--incoming", "127.0.0.1:0", "--mem", "32"]);
    let target = format!("127.0.0.1:{}", dst.listening_port());
    let src = common::hv(&["run", "--migrate-to", &target, "--migrate-after", "0.3", "--", "dirty-loop", "4", "1000", "1"]);
    let dst = dst.finish();
    let mismatch = "64 MiB of RAM, this destination 32 MiB";
    src.expect_code(0);
    src.expect(src.stderr.contains(mismatch) && src.stderr.contains("the guest runs on here"), "the source names the mismatch");
    src.expect(src.stdout.contains("dirty-loop: done"), "the source's guest ran to its end");
    dst.expect_code(1);
    dst.expect(dst.stderr.contains(mismatch), "the destination names the mismatch");
}

#[test]
fn hostile_a_destination_that_hangs_up_mid_stream_leaves_the_source_guest_running() {
    require_kvm!();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    // Accepts the header, reads 200 KiB of round 0, and hangs up.
    let fake = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        Header::read(&mut conn).expect("a good header");
        Reply::Accept.write(&mut conn).unwrap();
        let mut sink = vec![0u8; 200 << 10];
        conn.read_exact(&mut sink).expect("round 0 begins");
    });
    let src = common::hv(&["run", "--migrate-to", &target, "--migrate-after", "0.3", "--", "dirty-loop", "4", "1000", "1"]);
    fake.join().unwrap();
    src.expect_code(0);
    src.expect(src.stderr.contains("failed") && src.stderr.contains("the guest runs on here"), "the source reports the failure");
    src.expect(src.stdout.contains("dirty-loop: done"), "the source's guest ran to its end");
}
