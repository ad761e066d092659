//! A network namespace with a TAP device for the tests that reach a guest with the
//! host's own tools (`ping`, `curl`): made by the test, always removed (its `Drop`), so
//! the traffic stays inside it.

use std::process::Command;

/// A network namespace with a TAP at 10.0.0.1/24, removed when dropped (also when the
/// test fails half-way).
pub struct Namespace {
    /// Its name (`ip netns` lists it).
    pub name: String,
}

impl Namespace {
    /// Makes namespace `hvNAMEpid` with TAP `tap`, or says why it cannot (not root, no `ip`).
    pub fn make(name: &str, tap: &str) -> Result<Namespace, String> {
        let ns = Namespace { name: format!("hv{name}{}", std::process::id()) };
        let steps: [&[&str]; 5] = [
            &["ip", "netns", "add", &ns.name],
            &["ip", "netns", "exec", &ns.name, "ip", "tuntap", "add", "dev", tap, "mode", "tap"],
            &["ip", "netns", "exec", &ns.name, "ip", "addr", "add", "10.0.0.1/24", "dev", tap],
            &["ip", "netns", "exec", &ns.name, "ip", "link", "set", tap, "up"],
            &["ip", "netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"],
        ];
        for step in steps {
            run(step)?;
        }
        Ok(ns)
    }

    /// Joins this namespace (192.168.231.1/24) and `other` (.2) with a veth pair.
    pub fn link(&self, other: &Namespace) -> Result<(), String> {
        let (a, b) = (format!("hva{}", std::process::id() % 100_000), format!("hvb{}", std::process::id() % 100_000));
        run(&["ip", "link", "add", &a, "netns", &self.name, "type", "veth", "peer", "name", &b, "netns", &other.name])?;
        for (ns, dev, addr) in [(self, &a, "192.168.231.1/24"), (other, &b, "192.168.231.2/24")] {
            run(&["ip", "netns", "exec", &ns.name, "ip", "addr", "add", addr, "dev", dev])?;
            run(&["ip", "netns", "exec", &ns.name, "ip", "link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// The guest's page, fetched with the host's `curl` from inside the namespace.
    pub fn curl(&self) -> String {
        let out = self.command("curl").args(["-s", "-m", "20", "--retry", "3", "http://10.0.0.2/"]).output().expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Runs one setup step; its error names the command and what it printed.
fn run(step: &[&str]) -> Result<(), String> {
    let out = Command::new(step[0]).args(&step[1..]).output().map_err(|e| format!("cannot run `{}`: {e}", step[0]))?;
    if !out.status.success() {
        return Err(format!("`{}` failed: {}", step.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

