//! Talking to the hypervisor: hypercalls, pages shared with it, event channels, and
//! the split-driver frontends built on them.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`hypercall`] | the guest side of the hypercall ABI, one function per hypercall |
//! | [`shared_page`] | a guest-physical page shared with the hypervisor (rings, grant table) |
//! | [`clock`] | the time-stamp counter: `rdtsc`, or the `read_clock` hypercall when hv records the run |
//! | [`event_channel`] | the upcall handler, waiting for an upcall, doorbells |
//! | [`memory_mode`] | the memory mode, read at each use (a restore may change it), and the CR3 section |
//! | [`drivers`] | the console, block and balloon frontends, set up from the boot-info page |
//! | [`console`] | `print!`/`println!`: through the console ring, or a hypercall early on |
//! | [`panic`](mod@panic) | a Rust panic becomes a `report_panic` hypercall |

pub mod clock;
pub mod console;
pub mod drivers;
pub mod event_channel;
pub mod hypercall;
pub mod memory_mode;
pub mod panic;
pub mod shared_page;
