//! The benchmark's own network: a network namespace with a TAP device at 10.0.0.1/24 and
//! its loopback up, made with iproute2's `ip` and removed when the [`Namespace`] value is
//! dropped (also when the run fails half-way, or is interrupted: see `super::interrupt`).
//!
//! A network namespace is a whole separate copy of the kernel's network stack
//! (interfaces, addresses, routes, sockets), which is how containers get their own
//! network. Here it keeps the benchmark's traffic off the host's real interfaces: the
//! TAP, the guest's address and every ping and `curl` live and die inside it.
//!
//! A thread joins it with `setns(2)` ([`Namespace::enter`]); sockets it then creates, and
//! processes it starts, belong to the namespace. Only the thread that entered is moved:
//! the rest of hv stays where it was.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

/// Where `ip netns add` puts a namespace's handle.
const NETNS_DIR: &str = "/run/netns";
/// The host's end of the TAP; the guests are 10.0.0.2, 10.0.0.3…
pub const HOST_ADDRESS: &str = "10.0.0.1/24";

/// A network namespace with a TAP, removed on drop.
pub struct Namespace {
    name: String,
    tap: String,
}

/// Why the namespace could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// What hv needs is not there (root, `ip`, `/dev/net/tun`).
    #[error("hv bench --network needs {0}")]
    Missing(String),
    /// A step failed.
    #[error("`{command}` failed: {message}")]
    Step {
        /// The command.
        command: String,
        /// What it said.
        message: String,
    },
    /// `setns` failed.
    #[error("cannot enter the network namespace {name}: {source}")]
    Enter {
        /// The namespace.
        name: String,
        /// What the kernel said.
        source: std::io::Error,
    },
}

/// Says what is missing to make a namespace with a TAP here, if anything: root, `ip`,
/// `/dev/net/tun`.
pub fn preflight() -> Result<(), NamespaceError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(NamespaceError::Missing("root (it makes a network namespace and a TAP device, and sends ICMP on a raw socket)".into()));
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Err(NamespaceError::Missing("iproute2's `ip` (Debian: apt-get install iproute2)".into()));
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err(NamespaceError::Missing("/dev/net/tun (the tun module) for the TAP device".into()));
    }
    Ok(())
}

impl Namespace {
    /// Makes namespace `name` with TAP `tap` at [`HOST_ADDRESS`], both up, and its loopback
    /// up. What was made before a failing step is removed again.
    pub fn make(name: &str, tap: &str) -> Result<Namespace, NamespaceError> {
        preflight()?;
        run(&["ip", "netns", "add", name])?;
        // From here on, dropping `ns` removes the namespace (and the TAP inside it).
        let ns = Namespace { name: name.to_string(), tap: tap.to_string() };
        let inside: [&[&str]; 4] = [
            &["tuntap", "add", "dev", tap, "mode", "tap"],
            &["addr", "add", HOST_ADDRESS, "dev", tap],
            &["link", "set", tap, "up"],
            &["link", "set", "lo", "up"],
        ];
        for step in inside {
            let mut command = vec!["ip", "netns", "exec", name, "ip"];
            command.extend_from_slice(step);
            run(&command)?;
        }
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TAP device's name.
    pub fn tap(&self) -> &str {
        &self.tap
    }

    /// Moves the calling thread into the namespace: its new sockets, and the processes
    /// it starts, are the namespace's. (Only this thread: `setns` with `CLONE_NEWNET`
    /// changes the caller alone.)
    pub fn enter(&self) -> Result<(), NamespaceError> {
        let path: PathBuf = [NETNS_DIR, &self.name].iter().collect();
        let enter_error = |source| NamespaceError::Enter { name: self.name.clone(), source };
        let handle = File::open(&path).map_err(enter_error)?;
        // SAFETY: `handle` is an open namespace file for the call's duration; setns takes
        // no pointers and moves only this thread.
        if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(enter_error(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Removing the namespace takes the TAP with it once hv's descriptors close.
        match Command::new("ip").args(["netns", "del", &self.name]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("hv bench: could not remove the network namespace {}: {}", self.name, String::from_utf8_lossy(&out.stderr).trim()),
            Err(e) => eprintln!("hv bench: could not remove the network namespace {} (`ip netns del {0}`): {e}", self.name),
        }
    }
}

/// Runs one `ip` command; its standard error is the message if it fails.
fn run(command: &[&str]) -> Result<(), NamespaceError> {
    let step_error = |message: String| NamespaceError::Step { command: command.join(" "), message };
    let out = Command::new(command[0]).args(&command[1..]).output().map_err(|e| step_error(e.to_string()))?;
    if !out.status.success() {
        return Err(step_error(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}
