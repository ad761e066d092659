//! The block device's host side: which disk image backs it (`--disk PATH[,ro]`), and
//! which guest frames its backend may be granted.

use std::path::PathBuf;

use backend_drivers::block::image::{DiskImage, ImageError};
use backend_drivers::block::BlockBackend;
use backend_drivers::grant_table::GrantTable;
use pv_abi::addr::PseudoPhys;
use pv_abi::grant::grant_window;
use pv_abi::layout::GRANT_TABLE_GPA;

use crate::memory::GuestRam;

/// A disk to attach (`--disk PATH[,ro]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// The image file.
    pub path: PathBuf,
    /// Refuse writes.
    pub read_only: bool,
}

impl std::str::FromStr for DiskConfig {
    type Err = String;

    /// `PATH` or `PATH,ro`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (path, read_only) = match s.strip_suffix(",ro") {
            Some(path) => (path, true),
            None => (s, false),
        };
        if path.is_empty() {
            return Err("expected PATH or PATH,ro".into());
        }
        Ok(DiskConfig { path: PathBuf::from(path), read_only })
    }
}

/// Opens the disk image, so a bad path is reported before KVM is touched.
pub fn open_disk(config: &DiskConfig) -> Result<DiskImage, ImageError> {
    DiskImage::open(&config.path, config.read_only)
}

/// The block backend for `image`, with its grant table over `ram`.
///
/// Grants may name only the frames of pv-abi's grant window: never a page table (a
/// device writing one would change the guest's mappings behind the MMU's back, in shadow
/// mode without the write ever being trapped) and never hv's reserved area.
pub fn backend(image: DiskImage, ram: &GuestRam) -> BlockBackend {
    let grants = GrantTable::new(ram.memory().clone(), PseudoPhys::new(GRANT_TABLE_GPA), grant_window(ram.size()));
    BlockBackend::new(image, grants)
}
