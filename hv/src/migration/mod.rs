//! Pre-copy live migration: moving a running guest to another hv process over TCP.
//!
//! A VM is a state machine whose whole state the hypervisor holds, so it can be moved:
//! its memory, its vCPU and its devices' positions are copied to another host and it
//! continues there. *Live* migration (Clark et al., NSDI'05) keeps the guest running
//! while most of the memory travels: it copies memory in rounds, each round the pages
//! the guest dirtied during the previous one, and pauses the guest only for the last,
//! small set and the state. The time the guest is paused is the **downtime**; hv
//! measures it and every round's figures.
//!
//! | file | idea |
//! | --- | --- |
//! | [`stream`] | the wire format, documented where it is defined, checked on receipt |
//! | [`dirty`] | pages dirtied since the last look: KVM's log and hv's own record, in either memory mode |
//! | [`precopy`] | the policy: the downtime estimate and the stop condition |
//! | [`figures`] | per-round figures, the report, its JSON; downtime defined |
//! | [`plot`] | dirty pages per round as an SVG chart |
//! | [`send`] | the source: rounds, pause, last pages and state, confirmation or resume |
//! | [`receive`] | the destination: fill fresh RAM from the stream, every record checked |
//!
//! The destination builds its VM from the received RAM and state with the state layer's
//! restore, in either memory mode, and confirms; only then does the source end its run.

pub mod stream;
pub mod dirty;
pub mod precopy;
pub mod figures;
pub mod plot;
pub mod send;
pub mod receive;

use crate::kvm::dirty_log::DirtyLogError;
use crate::vcpu::control::VcpuGone;
pub use figures::{MigrationReport, RoundFigures};
pub use send::{send, SendOptions};
use stream::StreamError;

/// Why a migration failed (on the source, the guest then runs on as before).
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The destination could not be reached.
    #[error("cannot connect to {to}: {source}")]
    Connect {
        /// The destination.
        to: String,
        /// Why.
        source: std::io::Error,
    },
    /// The stream broke or broke the rules.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The destination refused the VM (its message).
    #[error("{0}")]
    Refused(String),
    /// The VM does not fit the destination (RAM size, kernel).
    #[error("{0}")]
    Mismatch(String),
    /// KVM's dirty log could not be turned on.
    #[error("cannot turn on KVM's dirty log: {0}")]
    Logging(kvm_ioctls::Error),
    /// The dirty log could not be read.
    #[error(transparent)]
    Dirty(#[from] DirtyLogError),
    /// Guest memory could not be read or allocated.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The VM's state could not be taken or used.
    #[error("the VM state: {0}")]
    State(String),
    /// The guest stopped (by itself) before the migration was done.
    #[error(transparent)]
    Gone(#[from] VcpuGone),
}

impl From<std::io::Error> for MigrationError {
    fn from(e: std::io::Error) -> Self {
        MigrationError::Stream(StreamError::Io(e))
    }
}
