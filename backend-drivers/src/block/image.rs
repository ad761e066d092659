//! The disk image: a raw file of 512-byte sectors on the host.
//!
//! The path comes from the user and may name anything, so what it names is checked
//! before it is opened: a regular file or a block device, nothing else. A FIFO would
//! block the open (and every read) until some other program wrote to it, and a
//! directory opens read-only but every read fails. The file is then opened without
//! blocking (in case it was swapped for a FIFO between the check and the open) and the
//! open file checked again.

use std::fs::{File, FileType, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use pv_abi::device::block::SECTOR_SIZE;

/// An open disk image.
pub struct DiskImage {
    file: File,
    path: PathBuf,
    sectors: u64,
    read_only: bool,
    reported_io_error: bool,
    /// A flush failed once: every later one fails too (see [`DiskImage::flush`]).
    flush_failed: bool,
}

/// Why an image could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be opened.
    #[error("cannot open the disk image {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path names something other than a regular file or a block device.
    #[error("the disk image {path} is {kind}; a disk image must be a regular file or a block device")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead ("a directory", "a FIFO", ...).
        kind: &'static str,
    },
    /// The file holds no whole sector.
    #[error("the disk image {path} is {len} bytes: smaller than one 512-byte sector")]
    TooSmall {
        /// The path.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
}

impl DiskImage {
    /// Opens `path`, read-write unless `read_only`. A size that is not a multiple of 512
    /// is allowed; the partial last sector is not part of the disk.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, ImageError> {
        let open_err = |source| ImageError::Open { path: path.to_path_buf(), source };
        let not_a_file = |kind| ImageError::NotAFile { path: path.to_path_buf(), kind };
        let before = std::fs::metadata(path).map_err(open_err)?.file_type();
        if !is_disk(before) {
            return Err(not_a_file(file_kind(before)));
        }
        // O_NONBLOCK only matters if the path became a FIFO since the check: the open
        // then returns at once, and the check below refuses it. Reads and writes of a
        // regular file or a block device never block in the O_NONBLOCK sense.
        let mut file = OpenOptions::new().read(true).write(!read_only).custom_flags(libc::O_NONBLOCK).open(path).map_err(open_err)?;
        let opened = file.metadata().map_err(open_err)?;
        if !is_disk(opened.file_type()) {
            return Err(not_a_file(file_kind(opened.file_type())));
        }
        // A block device's size is not in its metadata (st_size is 0): ask the device.
        let len = if opened.file_type().is_block_device() { file.seek(SeekFrom::End(0)).map_err(open_err)? } else { opened.len() };
        let sectors = len / SECTOR_SIZE;
        if sectors == 0 {
            return Err(ImageError::TooSmall { path: path.to_path_buf(), len });
        }
        Ok(DiskImage { file, path: path.to_path_buf(), sectors, read_only, reported_io_error: false, flush_failed: false })
    }

    /// Size in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether writes are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Reads exactly `buf.len()` bytes at byte `offset` (a short read is an error: the
    /// file shrank under us).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Writes all of `data` at byte `offset`: `Ok` only once every byte is in the file
    /// (a full file system, ENOSPC, fails it, even part-way).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// Fails if the image file was removed since it was opened. hv still holds it open,
    /// so reads and writes would go on working, but what is written would vanish with
    /// hv: writes and flushes are refused instead of reported done.
    pub fn check_present(&self) -> std::io::Result<()> {
        if self.file.metadata()?.nlink() == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "the disk image was removed"));
        }
        Ok(())
    }

    /// Makes every completed write durable on the host's disk (`fdatasync`), and
    /// returns only once it has.
    ///
    /// After one failure every later flush fails too. Linux reports a failed write-back
    /// to `fdatasync` once and then forgets it, so a second flush would succeed although
    /// the data the first one covered may never reach the disk; the guest must not be
    /// told that it did.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.flush_failed {
            return Err(std::io::Error::other("an earlier flush of the disk image failed: the data it covered may be lost"));
        }
        self.check_present()?;
        self.file.sync_data().inspect_err(|_| self.flush_failed = true)
    }

    /// Tells the user (once) that the image failed; the guest gets EIO responses.
    pub fn report_io_error(&mut self) {
        if !self.reported_io_error {
            self.reported_io_error = true;
            eprintln!(
                "hv: blk backend: I/O on the disk image {} failed (was it truncated or removed?); the guest gets I/O errors",
                self.path.display()
            );
        }
    }
}

/// Whether a file of type `t` can be a disk image: a regular file or a block device.
fn is_disk(t: FileType) -> bool {
    t.is_file() || t.is_block_device()
}

/// What a file of type `t` is, in words, for an error message that says why a path was
/// refused.
pub fn file_kind(t: FileType) -> &'static str {
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory for one test, removed at the end.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hv-image-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn hostile_disk_paths_that_are_not_files_are_refused_before_opening() {
        let dir = scratch("kinds");
        let fifo = dir.join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path, which lives until after the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // A FIFO opened read-only would block until a writer came: it must not be opened.
        for (path, kind) in [(&fifo, "a FIFO (named pipe)"), (&dir, "a directory")] {
            for read_only in [true, false] {
                match DiskImage::open(path, read_only) {
                    Err(ImageError::NotAFile { kind: k, .. }) => assert_eq!(k, kind),
                    other => panic!("{} opened as a disk: {:?}", path.display(), other.map(|i| i.sectors())),
                }
            }
        }
        let chardev = Path::new("/dev/null");
        assert!(matches!(DiskImage::open(chardev, true), Err(ImageError::NotAFile { kind: "a character device", .. })));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn hostile_a_failed_flush_is_never_followed_by_a_successful_one() {
        let dir = scratch("flush");
        let path = dir.join("disk.img");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let mut image = DiskImage::open(&path, false).unwrap();
        assert!(image.flush().is_ok());
        // Inject a failing fdatasync: it fails on a FIFO (EINVAL). Opened read-write, a
        // FIFO's open does not wait for a peer.
        let fifo = dir.join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path, which lives until after the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let regular = std::mem::replace(&mut image.file, OpenOptions::new().read(true).write(true).open(&fifo).unwrap());
        assert!(image.flush().is_err());
        // The file is a good one again, but what the failed flush covered is unknown.
        image.file = regular;
        assert!(image.flush().is_err(), "a later flush must not report the data safe");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn hostile_a_removed_image_refuses_flushes() {
        let dir = scratch("removed");
        let path = dir.join("disk.img");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let mut image = DiskImage::open(&path, false).unwrap();
        assert!(image.check_present().is_ok());
        std::fs::remove_file(&path).unwrap();
        assert!(image.check_present().is_err());
        assert!(image.flush().is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_block_device_is_accepted_and_its_size_asked_of_the_device() {
        // A loop device over a 1 MiB file; its metadata says 0 bytes.
        let dir = scratch("blockdev");
        let backing = dir.join("backing.img");
        std::fs::write(&backing, vec![0u8; 1 << 20]).unwrap();
        let attached = std::process::Command::new("losetup").args(["-f", "--show"]).arg(&backing).stderr(std::process::Stdio::null()).output();
        let device = match attached {
            Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
            _ => {
                eprintln!("SKIPPED: cannot attach a loop device here (needs root and losetup): the block-device case did not run");
                std::fs::remove_dir_all(&dir).ok();
                return;
            }
        };
        let opened = DiskImage::open(&device, true).map(|i| i.sectors());
        let _ = std::process::Command::new("losetup").arg("-d").arg(&device).status();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(opened.unwrap(), 2048, "{}", device.display());
    }

    #[test]
    fn a_regular_file_opens_with_its_whole_sectors() {
        let dir = scratch("regular");
        let path = dir.join("disk.img");
        std::fs::write(&path, vec![0u8; 3 * 512 + 100]).unwrap();
        let image = DiskImage::open(&path, true).unwrap();
        assert_eq!(image.sectors(), 3);
        std::fs::remove_dir_all(&dir).ok();
    }
}
