//! KVM, as hv uses it: the file-descriptor tree, the memory slots, the vCPU's registers,
//! and what the host can do.
//!
//! KVM's API is a tree of file descriptors, and kvm-ioctls mirrors it: `/dev/kvm`
//! (`Kvm`) creates a VM (`VmFd`), which owns memory slots and creates vCPUs (`VcpuFd`).
//! [`KvmVm`] holds one such tree with one vCPU and the guest RAM its slots point at.
//! This layer knows nothing of booting, devices or paging policy: it is told which slots
//! to create ([`MemoryPlan`]) and which registers to set, and it reports what KVM says.
//!
//! | file | idea |
//! | --- | --- |
//! | [`vm_handle`] | the VM, its vCPU and RAM, with drop order that keeps KVM safe |
//! | [`memslots`] | memory slots: which guest-physical range is backed by which host memory |
//! | [`dirty_log`] | KVM's dirty log on the slots of guest RAM, read from another thread |
//! | [`vcpu_state`] | the vCPU's whole state, for snapshots and migration, and the order KVM wants it back |
//! | [`registers`] | register state: reading and writing it, and the dump shown when a guest dies |
//! | [`cpuid`] | the CPUID the guest sees, with hv's own leaves |
//! | [`host_info`] | what the host is (CPU model, hardware EPT/NPT or KVM's software MMU) |

pub mod cpuid;
pub mod dirty_log;
pub mod host_info;
pub mod memslots;
pub mod registers;
pub mod vcpu_state;
pub mod vm_handle;

pub use memslots::{MemoryPlan, MemorySlot, SlotMemory};
pub use registers::RegisterDump;
pub use vm_handle::{KvmVm, KvmVmError};
