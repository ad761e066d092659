//! The disk image: a raw file of 512-byte sectors on the host.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use pv_abi::device::block::SECTOR_SIZE;

/// An open disk image.
pub struct DiskImage {
    file: File,
    path: PathBuf,
    sectors: u64,
    read_only: bool,
    reported_io_error: bool,
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
        let file = OpenOptions::new().read(true).write(!read_only).open(path).map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        let sectors = len / SECTOR_SIZE;
        if sectors == 0 {
            return Err(ImageError::TooSmall { path: path.to_path_buf(), len });
        }
        Ok(DiskImage { file, path: path.to_path_buf(), sectors, read_only, reported_io_error: false })
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

    /// Writes all of `data` at byte `offset`.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// Makes every completed write durable on the host's disk.
    pub fn flush(&self) -> std::io::Result<()> {
        self.file.sync_data()
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
