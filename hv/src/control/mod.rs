//! The control socket: hv's management interface, like Firecracker's API socket or
//! QEMU's QMP.
//!
//! `hv run --control PATH` serves a Unix socket at PATH while the guest runs; `hv ctl
//! PATH COMMAND` (or any program that writes JSON lines) asks the running VM to pause,
//! resume, or say how it is doing. The course notes' point that a VM is a state machine
//! the hypervisor holds starts here: the VM can be stopped between two instructions and
//! looked at from outside, without the guest's help or knowledge.
//!
//! A request travels: client → socket → a connection thread ([`server`]) → the line is
//! checked ([`dispatch`], with [`protocol`] and [`table`]) → the command's handler
//! ([`commands`]) → a job on the vCPU thread (`crate::vcpu::control`), run at the next
//! exit boundary → the reply line goes back.
//!
//! | file | idea |
//! | --- | --- |
//! | [`protocol`] | the wire format, version 1, documented where it is defined |
//! | [`framing`] | cutting a stream into lines without trusting the peer to end them |
//! | [`table`] | a command's arguments: declared once, checked on the server, built by the client |
//! | [`commands`] | the command table and one handler each |
//! | [`dispatch`] | a request line to its reply line: checks, then the command's handler |
//! | [`socket_file`] | the socket's file: owner-only from the start, stale ones replaced, removed at the end |
//! | [`signals`] | Ctrl-C and `kill` while serving: stop the guest cleanly, remove the socket |
//! | [`server`] | the threads that serve clients, bounded and with deadlines |
//! | [`client`] | `hv ctl`: one request, one reply |

pub mod protocol;
pub mod framing;
pub mod table;
pub mod commands;
pub mod dispatch;
pub mod socket_file;
pub mod signals;
pub mod server;
pub mod client;

pub use commands::Session;
pub use server::ControlServer;
