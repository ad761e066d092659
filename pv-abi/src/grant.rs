//! Grants: how a frontend lets a backend touch one page of its memory, for one request.
//!
//! A backend must never be able to read or write guest memory at will (in Xen it runs in
//! another VM; in hv it runs on another thread, which is the same idea in miniature).
//! Instead the frontend *grants* access to a frame: it fills an entry of its grant table
//! (a page whose location the boot-info page announces) and puts the entry's index, a
//! [`GrantRef`], in the request. The hypervisor checks the entry on every access the
//! backend makes, and refuses anything that is not granted, has been revoked, or names
//! a frame outside the guest's memory.
//!
//! ```text
//!  grant table page: 256 entries of 16 bytes
//!  ┌──────────┬──────────┬───────────────────┐
//!  │ flags u32│ reserved │ frame (gpa >> 12) │   entry 0 is never used (GrantRef 0 = "none")
//!  ├──────────┼──────────┼───────────────────┤
//!  │ …        │          │                   │
//! ```
//!
//! The frontend writes `frame` first and `flags` last (with release ordering), so a
//! backend that sees `GTF_PERMIT_ACCESS` also sees the right frame. To revoke, it clears
//! `flags` once the response has arrived. (hv's backends copy data in and out while they
//! handle a request and keep no mapping, so a grant that is revoked early only makes that
//! request fail.)

/// Index of an entry in the grant table.
pub type GrantRef = u32;

/// Size of one entry.
pub const GRANT_ENTRY_SIZE: usize = 16;
/// Entries in the (single-page) grant table.
pub const GRANT_ENTRIES: u32 = 4096 / GRANT_ENTRY_SIZE as u32;
/// Byte offset of `flags` in an entry.
pub const GRANT_FLAGS_OFFSET: usize = 0;
/// Byte offset of `frame` in an entry.
pub const GRANT_FRAME_OFFSET: usize = 8;

/// The entry grants access.
pub const GTF_PERMIT_ACCESS: u32 = 1 << 0;
/// The access is read-only (the backend may read the frame, not write it).
pub const GTF_READONLY: u32 = 1 << 1;

/// What the backend wants to do with a granted frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantAccess {
    /// Read guest data (e.g. a block write: data goes from guest to disk).
    Read,
    /// Write guest data (e.g. a block read: data goes from disk to guest).
    Write,
}

/// Why a grant check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantProblem {
    /// The reference is 0 or past the table.
    OutOfRange,
    /// The entry does not grant access (never granted, or revoked).
    NotGranted,
    /// A write through a read-only grant.
    ReadOnly,
    /// The granted frame is not a guest RAM frame the backend may use.
    BadFrame,
}

impl GrantProblem {
    /// Short name for traces.
    pub const fn name(self) -> &'static str {
        match self {
            GrantProblem::OutOfRange => "out-of-range",
            GrantProblem::NotGranted => "not-granted",
            GrantProblem::ReadOnly => "read-only",
            GrantProblem::BadFrame => "bad-frame",
        }
    }
}

impl core::fmt::Display for GrantProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantProblem::OutOfRange => write!(f, "the grant reference is 0 or past the table's {GRANT_ENTRIES} entries"),
            GrantProblem::NotGranted => f.write_str("the grant entry does not permit access (never granted, or revoked)"),
            GrantProblem::ReadOnly => f.write_str("the frame is granted read-only, and the backend asked to write it"),
            GrantProblem::BadFrame => f.write_str("the granted frame is not guest RAM a backend may use"),
        }
    }
}

impl core::error::Error for GrantProblem {}

/// Checks one entry (flags and frame as read, once, from the table) against an access.
/// `frame_ok` says whether the frame number is one the backend may touch.
pub fn check_grant(
    gref: GrantRef,
    flags: u32,
    frame: u64,
    access: GrantAccess,
    frame_ok: impl Fn(u64) -> bool,
) -> Result<u64, GrantProblem> {
    if gref == 0 || gref >= GRANT_ENTRIES {
        return Err(GrantProblem::OutOfRange);
    }
    if flags & GTF_PERMIT_ACCESS == 0 {
        return Err(GrantProblem::NotGranted);
    }
    if access == GrantAccess::Write && flags & GTF_READONLY != 0 {
        return Err(GrantProblem::ReadOnly);
    }
    if !frame_ok(frame) {
        return Err(GrantProblem::BadFrame);
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: fn(u64) -> bool = |_| true;

    #[test]
    fn a_granted_frame_is_returned() {
        assert_eq!(check_grant(5, GTF_PERMIT_ACCESS, 0x300, GrantAccess::Write, ANY), Ok(0x300));
        assert_eq!(check_grant(5, GTF_PERMIT_ACCESS | GTF_READONLY, 0x300, GrantAccess::Read, ANY), Ok(0x300));
    }

    #[test]
    fn problems_explain_themselves() {
        assert_eq!(GrantProblem::OutOfRange.to_string(), "the grant reference is 0 or past the table's 256 entries");
        let e: &dyn core::error::Error = &GrantProblem::BadFrame;
        assert!(e.to_string().contains("not guest RAM"));
    }

    #[test]
    fn hostile_references_are_refused() {
        assert_eq!(check_grant(0, GTF_PERMIT_ACCESS, 1, GrantAccess::Read, ANY), Err(GrantProblem::OutOfRange));
        assert_eq!(check_grant(GRANT_ENTRIES, GTF_PERMIT_ACCESS, 1, GrantAccess::Read, ANY), Err(GrantProblem::OutOfRange));
        assert_eq!(check_grant(u32::MAX, GTF_PERMIT_ACCESS, 1, GrantAccess::Read, ANY), Err(GrantProblem::OutOfRange));
        assert_eq!(check_grant(3, 0, 1, GrantAccess::Read, ANY), Err(GrantProblem::NotGranted));
        assert_eq!(check_grant(3, GTF_READONLY, 1, GrantAccess::Read, ANY), Err(GrantProblem::NotGranted));
        assert_eq!(
            check_grant(3, GTF_PERMIT_ACCESS | GTF_READONLY, 1, GrantAccess::Write, ANY),
            Err(GrantProblem::ReadOnly)
        );
        assert_eq!(check_grant(3, GTF_PERMIT_ACCESS, u64::MAX, GrantAccess::Read, |f| f < 100), Err(GrantProblem::BadFrame));
    }
}
