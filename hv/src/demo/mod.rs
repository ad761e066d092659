//! `hv demo`: the course's concepts shown on real VMs, paced for a room.
//!
//! Each demo is a few steps. A step says in a sentence or two what is about to happen and
//! why it matters, runs it (real guests, fresh VMs, figures measured now), and shows the
//! few trace lines or counters that prove it. Between steps it waits for Enter; `--auto`
//! goes on by itself after a short pause; `--fast` does not pause and uses small sizes
//! (the test suite runs every demo that way and compares its narration, figures redacted,
//! with a snapshot). docs/classroom.md says which demo goes with which lecture.
//!
//! | file | demo |
//! | --- | --- |
//! | [`stage`] | the presenter every demo speaks through |
//! | [`guest`] | running one demo guest, traced |
//! | [`trap_and_emulate`] | one exit: what KVM handed hv, what hv did |
//! | [`popek_goldberg`] | sensitive-but-unprivileged instructions in ring 3, and UMIP |
//! | [`hypercall`] | a hypercall's round trip against a bare exit, and hv's share |
//! | [`split_driver`] | one block request through ring, doorbell, backend, grant, upcall |
//! | [`emulated_vs_pv`] | lines through an emulated 16550 UART against the PV console |
//! | [`event_index`] | upcalls per request with and without notification suppression |
//! | [`shadow_vs_ept`] | trapped page-table writes in both modes, and batching |
//! | [`isolation`] | hostile hypercalls and page-table entries refused |
//! | [`switch`] | two guests ping each other through hv's virtual switch, which floods, learns, forwards |
//! | [`balloon`] | a running guest gives 40 MiB back; hv's resident memory falls by as much |
//! | [`snapshot`] | a running guest saved at an exit, continued from the file in the other mode |
//! | [`migration`] | pre-copy live migration between two VMs, round by round, and the downtime |
//! | [`vm_vs_container`] | a VM against a container hv makes from namespaces and a cgroup |
//! | [`record_replay`] | a run recorded, replayed without devices, to the same memory |

pub mod stage;
pub mod guest;
pub mod trap_and_emulate;
pub mod popek_goldberg;
pub mod hypercall;
pub mod split_driver;
pub mod event_index;
pub mod emulated_vs_pv;
pub mod shadow_vs_ept;
pub mod isolation;
pub mod switch;
pub mod balloon;
pub mod snapshot;
pub mod migration;
pub mod record_replay;
pub mod vm_vs_container;

use std::io::Write;

use stage::{Pacing, Stage};

/// Why a demo could not go on.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A guest could not be set up or run.
    #[error(transparent)]
    Vm(#[from] crate::vmm::VmError),
    /// A measurement failed.
    #[error("{0}")]
    Measure(String),
}

/// One demo: its name, a line saying what it shows, and the lecture it belongs to.
pub struct Demo {
    /// What `hv demo NAME` takes.
    pub name: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// The course-notes topic it illustrates.
    pub lecture: &'static str,
    run: fn(&mut Stage, bool) -> Result<(), DemoError>,
}

/// Every demo, in the order of the course.
pub const DEMOS: &[Demo] = &[
    Demo {
        name: "trap-and-emulate",
        about: "the guest runs natively until one sensitive instruction; the exit, what KVM handed hv, what hv did",
        lecture: "trap-and-emulate, Popek–Goldberg",
        run: |s, _| trap_and_emulate::run(s),
    },
    Demo {
        name: "popek-goldberg",
        about: "x86's sensitive-but-unprivileged instructions run in ring 3 without trapping, and what UMIP changed",
        lecture: "trap-and-emulate, Popek–Goldberg: why classic x86 was not virtualizable",
        run: |s, _| popek_goldberg::run(s),
    },
    Demo {
        name: "hypercall",
        about: "a hypercall's round trip next to a bare exit's, measured now, and hv's own share of it",
        lecture: "paravirtualization and hypercalls",
        run: |s, fast| hypercall::run(s, if fast { 2_000 } else { 20_000 }),
    },
    Demo {
        name: "split-driver",
        about: "one block request: frontend, ring, doorbell (no exit), backend thread, grant check, upcall",
        lecture: "split drivers and device domains",
        run: |s, _| split_driver::run(s),
    },
    Demo {
        name: "emulated-vs-pv",
        about: "the same lines through an emulated 16550 UART and through the PV console: exits and time per line",
        lecture: "device emulation against paravirtual devices",
        run: |s, fast| emulated_vs_pv::run(s, if fast { 20 } else { 200 }),
    },
    Demo {
        name: "event-index",
        about: "the same block workload with and without notification suppression: upcalls per request",
        lecture: "split drivers: rings and event channels",
        run: |s, fast| event_index::run(s, if fast { 200 } else { 2_000 }),
    },
    Demo {
        name: "shadow-vs-ept",
        about: "the same page-table workload in both memory modes, trapped writes counted, then mmu_update batching",
        lecture: "shadow paging versus EPT/NPT",
        run: shadow_vs_ept::run,
    },
    Demo {
        name: "isolation",
        about: "hostile hypercalls and page-table entries refused; the guest harms only itself",
        lecture: "isolation, the hypervisor as a security boundary",
        run: |s, _| isolation::run(s),
    },
    Demo {
        name: "switch",
        about: "two guests ping each other through hv's virtual L2 switch: the first frame flooded, then learned and forwarded",
        lecture: "split drivers and device domains: the network, Xen's dom0 bridge",
        run: |s, _| switch::run(s),
    },
    Demo {
        name: "balloon",
        about: "a running guest gives 40 MiB back to the host and hv's resident memory falls by as much; then it takes it back",
        lecture: "memory management: ballooning",
        run: |s, _| balloon::run(s),
    },
    Demo {
        name: "snapshot",
        about: "a running guest saved to a file at an exit boundary, then continued from it in the other memory mode",
        lecture: "VM state: snapshots (and the start of live migration)",
        run: |s, _| snapshot::run(s),
    },
    Demo {
        name: "migration",
        about: "a running guest moved to another VM by pre-copy live migration: the rounds, the downtime, every line once",
        lecture: "VM state: pre-copy live migration",
        run: |s, _| migration::run(s),
    },
    Demo {
        name: "record-replay",
        about: "a run recorded, then replayed with no device running, to the same memory byte for byte",
        lecture: "record and replay (ReVirt)",
        run: |s, _| record_replay::run(s),
    },
    Demo {
        name: "vm-vs-container",
        about: "a VM against a container hv makes itself (namespaces, a cgroup): start time, memory, hypercall vs system call, what each isolates",
        lecture: "containers: namespaces and cgroups, against VMs",
        run: |s, fast| vm_vs_container::run(s, if fast { 2_000 } else { 20_000 }),
    },
];

/// The demo called `name`.
pub fn find(name: &str) -> Option<&'static Demo> {
    DEMOS.iter().find(|d| d.name == name)
}

/// The list `hv demo` prints.
pub fn list() -> String {
    let mut text = String::from("hv demo NAME [--auto] [--fast]: the demonstrations, in the order of the course\n\n");
    for d in DEMOS {
        text.push_str(&format!("  {:<18} {}\n  {:<18} (lecture: {})\n", d.name, d.about, "", d.lecture));
    }
    text
}

/// Runs `demo` on `out` with `pacing` (`Fast` also picks small sizes); `styled` turns on
/// colour for a terminal.
pub fn run(demo: &Demo, out: &mut dyn Write, pacing: Pacing, styled: bool) -> Result<(), DemoError> {
    let mut stage = Stage::new(out, pacing, styled);
    let title = format!("hv demo {}: {}", demo.name, demo.about);
    stage.say(&title);
    (demo.run)(&mut stage, pacing == Pacing::Fast)
}
