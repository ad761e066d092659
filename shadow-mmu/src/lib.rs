//! # shadow-mmu: shadow page tables, independent of KVM
//!
//! Under **shadow paging** the guest keeps writing its own page tables, which map
//! guest-virtual addresses to *pseudo-physical* frames (the guest's idea of physical
//! memory), but the CPU never walks them. The hypervisor keeps a second set of tables,
//! the *shadow*, that maps guest-virtual addresses straight to *machine* frames: the
//! guest's tables composed with the pseudo-physical-to-machine table ([`P2m`]). CR3
//! points at the shadow; whenever the guest changes one of its tables, the hypervisor
//! must hear of it (the tables are write-protected, so the write traps) and change the
//! shadow to match. That is what this crate does. Hardware two-dimensional paging
//! (EPT/NPT) makes all of it unnecessary by walking both tables itself on a TLB miss;
//! the course notes compare the two, and `hv bench` measures them.
//!
//! ```text
//!  guest tables (pool frames)           shadow tables (shadow area)
//!  gva ──► pseudo-physical frame        gva ──► machine frame = p2m(pseudo frame)
//!           written by the guest                 written only by this crate
//! ```
//!
//! ## DESIGN
//! - **Owns** the shadow area (machine frames no guest mapping can reach), the shadow
//!   tables in it, and the cache of shadow roots.
//! - **Shares** shadow tables: there is at most one shadow per (guest table, level), so
//!   the kernel half, the same in every address space, is shadowed once. A guest write
//!   to a table updates every shadow of that table ([`ShadowMmu::guest_pt_write`]).
//! - **Builds eagerly**: a shadow table is filled completely when it is made. Cheap for
//!   small guests, and it makes "the shadow equals the reference walk" a property that
//!   holds at every instant, which is what the tests check. The work is bounded per
//!   operation: a write or batch builds at most a budget of tables
//!   ([`ShadowMmu::build_budget`]), past which every shadow is dropped and the root is
//!   built once afresh (`examples/worst_exit.rs` measures the worst exits).
//! - **Never** reflects an entry that points outside the guest's frames, a 1 GiB page, or
//!   an entry with reserved bits; never lets a guest page table live outside the
//!   page-table pool; never reflects a pool frame writable unless the pool's machine
//!   frames themselves trap writes ([`ShadowConfig::pool_traps_writes`]). Each refusal
//!   is a [`ShadowEvent`].
//! - **Accessed/Dirty bits**: shadow leaf entries are made with A and D already set, so
//!   the CPU never writes them, and the guest's own entries are left as the guest wrote
//!   them. A guest that relied on A/D bits (for page replacement) would need them copied
//!   back; pv-guest does not.
//! - Data enters as guest page-table writes and root loads, reads guest tables through
//!   [`MachineMemory`], and leaves as machine addresses of shadow roots.
//! - **Addresses and entries** are pv-abi's types (`pv_abi::addr`: `PseudoPhys`,
//!   `MachineAddr`, `PseudoFrame`, `MachineFrame`, `GuestVirt`; `pv_abi::paging`: `Pte`,
//!   `PteFlags`, `table_index`), the same ones hv and the guest use, so a guest entry's
//!   pseudo-physical frame cannot be stored in a shadow entry without going through the
//!   [`P2m`].
//!
//! ## Modules, lowest first
//!
//! A module uses only the modules in rows before its own, so no two modules import each
//! other in a circle.
//!
//! | module | owns | must never |
//! | --- | --- | --- |
//! | [`event`] | what the engine reports: events and counters | decide anything (it only records) |
//! | [`memory`] | how the engine reaches machine memory (a trait, and a vector for tests) | know about page tables beyond one entry |
//! | [`p2m`] | the pseudo-physical-to-machine table | be the identity by accident: hv's is deliberately not |
//! | [`rules`] | the configuration and the isolation rules both the engine and the reference apply | differ between the two |
//! | [`reference`](mod@reference) | what a translation must be, worked out from scratch; the CPU's walk of shadow tables | keep state |
//! | [`shadow`] | the engine: shadow tables, their reference counts and frames, the root cache | write a shadow entry that reaches outside the guest's frames |
//! | [`fuzz_entry`] | the body of the `shadow_mmu` fuzz target and its corpus test: the property test's checks under fuzzer-chosen steps | be used by the engine |
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod event;
pub mod memory;
pub mod p2m;
pub mod rules;
pub mod reference;
pub mod shadow;
#[doc(hidden)]
pub mod fuzz_entry;

pub use event::{Refusal, ShadowEvent, ShadowStats};
pub use memory::{MachineMemory, MemoryError, VecMemory};
pub use p2m::P2m;
pub use rules::ShadowConfig;
pub use shadow::{ShadowError, ShadowMmu};
