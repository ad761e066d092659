//! The user-image loader (`task::user_image`) refuses bad ELF files: each test builds a
//! small executable in a buffer, breaks one thing, and checks the error. The loader
//! reads the kernel's own embedded program, but it parses it as input, and these are
//! the promises that makes.

use pv_abi::addr::GuestVirt;

use super::check::{ensure, SelfTest, TestResult};
use crate::task::user_image::{ImageError, UserImage, IMAGE_LOWEST};

/// The tests.
pub const TESTS: [SelfTest; 11] = [
    ("user_image_embedded_netd_parses", |_| embedded_netd_parses()),
    ("user_image_minimal_executable_parses", |_| expect(|_| {}, None)),
    ("hostile_user_image_bad_magic", |_| expect(|f| f[1] = b'X', Some(ImageError::NotAnExecutable))),
    ("hostile_user_image_writable_code", |_| expect(|f| put32(f, PH + 4, 7), Some(ImageError::WritableCode))),
    ("hostile_user_image_below_user_images", |_| expect(|f| put64(f, PH + 16, IMAGE_LOWEST.raw() - 0x1000), Some(ImageError::BadSegment))),
    ("hostile_user_image_in_the_device_window", |_| expect(|f| put64(f, PH + 16, RESERVED_START), Some(ImageError::BadSegment))),
    ("hostile_user_image_segment_past_the_file", |_| expect(|f| put64(f, PH + 8, FILE_LEN as u64 - 8), Some(ImageError::Truncated))),
    ("hostile_user_image_file_size_over_memory_size", |_| expect(|f| put64(f, PH + 40, 8), Some(ImageError::BadSegment))),
    ("hostile_user_image_program_headers_past_the_file", |_| expect(|f| put64(f, 32, u64::MAX - 8), Some(ImageError::Truncated))),
    ("hostile_user_image_too_many_pages", |_| expect(|f| put64(f, PH + 40, 8 << 20), Some(ImageError::TooLarge))),
    ("hostile_user_image_entry_outside_its_code", |_| expect(|f| put64(f, 24, IMAGE_LOWEST.raw() + 0x10_0000), Some(ImageError::BadEntry))),
];

/// The test file's length.
const FILE_LEN: usize = 256;
/// Where its one program header starts.
const PH: usize = 64;
/// The window the tests reserve, as the network task's loader does.
const RESERVED_START: u64 = 0x3000_0000;

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(f: &mut [u8], at: usize, v: u32) {
    f[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(f: &mut [u8], at: usize, v: u64) {
    f[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A minimal valid executable: one read+execute segment of 16 bytes at the lowest
/// address user images may use, its bytes at offset 128 of the file, entry at its start.
fn minimal() -> [u8; FILE_LEN] {
    let mut f = [0u8; FILE_LEN];
    f[..4].copy_from_slice(&[0x7f, b'E', b'L', b'F']);
    f[4] = 2; // 64-bit
    f[5] = 1; // little-endian
    f[6] = 1; // version
    put16(&mut f, 16, 2); // executable
    put16(&mut f, 18, 62); // x86-64
    put64(&mut f, 24, IMAGE_LOWEST.raw()); // entry
    put64(&mut f, 32, PH as u64); // program headers' offset
    put16(&mut f, 54, 56); // program header size
    put16(&mut f, 56, 1); // one program header
    put32(&mut f, PH, 1); // PT_LOAD
    put32(&mut f, PH + 4, 5); // read + execute
    put64(&mut f, PH + 8, 128); // offset in the file
    put64(&mut f, PH + 16, IMAGE_LOWEST.raw()); // vaddr
    put64(&mut f, PH + 32, 16); // file size
    put64(&mut f, PH + 40, 16); // memory size
    f
}

/// Parses the minimal executable after `breaks` changed it; passes if the outcome is
/// `expected` (`None`: it parses).
fn expect(breaks: impl FnOnce(&mut [u8; FILE_LEN]), expected: Option<ImageError>) -> TestResult {
    let mut file = minimal();
    breaks(&mut file);
    let reserved = GuestVirt::new(RESERVED_START)..GuestVirt::new(RESERVED_START + 0x20_0000);
    let outcome = UserImage::parse(&file, reserved).err();
    ensure(outcome == expected, "the loader's verdict on the image is not the expected one")
}

fn embedded_netd_parses() -> TestResult {
    let parsed = UserImage::parse(crate::task::net_task::image(), GuestVirt::new(RESERVED_START)..GuestVirt::new(RESERVED_START + 0x20_0000));
    ensure(parsed.is_ok(), "pv-netd, as embedded in the kernel, is not a loadable image")
}
