//! Several guests in one hv process (`hv run --guests N`): each its own [`Vm`] on its own
//! vCPU thread.
//!
//! This is what "a VM is a value" buys: nothing one guest holds (its KVM VM, RAM, shadow
//! tables, device threads, console, trace, watchdog) is shared with another, so running
//! N of them is making N values and giving each a thread. What the guests do share is
//! deliberate and outside them: the terminal, where each line carries the guest's name
//! (`devices::console::PrefixedLines`), and, once a network is attached, the virtual
//! switch their network backends are ports of, as Xen's guests share dom0's bridge.
//!
//! All the guests are created before any runs, so a configuration that fails (a bad
//! kernel, too little memory) is reported before a single guest has started; then they
//! are released together and the group ends when the last one stops.

use std::io::Write;
use std::time::Instant;

use backend_drivers::switch::{Switch, SwitchConfig, SwitchStats};
use backend_drivers::switch::tap::{TapPort, TapStats};

use super::{RunReport, Vm, VmConfig, VmError};
use crate::devices::net::NetConfig;
use crate::devices::tap::{attach_tap, AttachTapError};
use crate::vcpu::control::VcpuControl;

/// Most guests one hv runs at once: each needs a thread, its RAM and its share of two
/// cores here; more would teach nothing new.
pub const MAX_GUESTS: usize = 16;

/// One guest of a group, before it exists.
pub struct GuestSpec {
    /// Its name: the console prefix, and how messages and `--stats` name it (`g0`, `g1`…).
    pub name: String,
    /// What it is made of.
    pub config: VmConfig,
}

/// The name of guest `index` of a group.
pub fn guest_name(index: usize) -> String {
    format!("g{index}")
}

/// How one guest of a group ended.
pub struct GuestEnd {
    /// Its name.
    pub name: String,
    /// How its run ended (an error if hv could not run it).
    pub result: Result<RunReport, VmError>,
}

/// The group's network: every guest gets a network device on one virtual switch, and
/// its address from the boot-info page (guest `i`: 10.0.0.(i+2)/24, the host 10.0.0.1).
#[derive(Clone, Debug, Default)]
pub struct GroupNetwork {
    /// An existing host TAP device to attach as one more port of the switch.
    pub tap: Option<String>,
}

/// How a group ended: each guest, and the network's counters (if it had one).
pub struct GroupEnds {
    /// Each guest, in the order of the specs.
    pub guests: Vec<GuestEnd>,
    /// The switch's counters at the end.
    pub switch: Option<SwitchStats>,
    /// The TAP's counters at the end.
    pub tap: Option<(String, TapStats)>,
}

/// Why a group did not start.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// No guests, or more than [`MAX_GUESTS`].
    #[error("a group of {0} guests: hv runs 1 to {MAX_GUESTS}")]
    Size(usize),
    /// One guest could not be created (the others are not started).
    #[error("{name}: {source}")]
    Guest {
        /// The guest's name.
        name: String,
        /// Why.
        source: VmError,
    },
    /// The TAP device could not be attached.
    #[error(transparent)]
    Tap(#[from] AttachTapError),
    /// A guest's switch port could not be made.
    #[error("{name}: cannot make its port on the switch: {source}")]
    Port {
        /// The guest's name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// A guest's thread could not be started.
    #[error("{name}: cannot start its vCPU thread: {source}")]
    Thread {
        /// The guest's name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A group whose guests all exist (and whose TAP, if any, is attached), none running
/// yet: [`Group::run`] runs them. Between the two, a caller may reach each guest
/// ([`Group::guests`]), e.g. to serve a control socket for it.
pub struct Group {
    vms: Vec<(String, Vm)>,
    switch: Option<Switch>,
    tap: Option<(String, TapPort)>,
}

/// Creates every guest of `specs`, each printing through `console(name)` (and, with
/// `network`, each on one virtual switch), then runs each on a thread of its own (named
/// `vcpu-NAME`) and waits for all of them. The ends are in the order of `specs`.
pub fn run_group(
    specs: Vec<GuestSpec>,
    started: Instant,
    console: impl Fn(&str) -> Box<dyn Write + Send>,
    network: Option<GroupNetwork>,
) -> Result<GroupEnds, GroupError> {
    build_group(specs, started, console, network)?.run()
}

/// [`run_group`], handing `on_running` each guest's name and [`VcpuControl`] once every
/// guest's thread has started (and before this thread confines itself), so that another
/// thread can reach the guests while they run: stop a guest that serves until told
/// (`hv bench --network`), set a balloon target. `on_running` runs on this thread: it
/// should pass the controls on (a channel) and return.
pub fn run_group_with_controls(
    specs: Vec<GuestSpec>,
    started: Instant,
    console: impl Fn(&str) -> Box<dyn Write + Send>,
    network: Option<GroupNetwork>,
    on_running: impl FnOnce(Vec<(String, VcpuControl)>),
) -> Result<GroupEnds, GroupError> {
    build_group(specs, started, console, network)?.run_with_controls(on_running)
}

/// Creates every guest of `specs` as [`run_group`] does, and attaches the TAP, without
/// running any.
pub fn build_group(
    specs: Vec<GuestSpec>,
    started: Instant,
    console: impl Fn(&str) -> Box<dyn Write + Send>,
    network: Option<GroupNetwork>,
) -> Result<Group, GroupError> {
    if specs.is_empty() || specs.len() > MAX_GUESTS {
        return Err(GroupError::Size(specs.len()));
    }
    let seccomp = specs.iter().any(|s| s.config.seccomp);
    let switch = network.as_ref().map(|_| Switch::new(SwitchConfig::default()));
    let mut vms = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let vm = match &switch {
            None => Vm::new(&spec.config, console(&spec.name), started),
            Some(switch) => {
                let port = switch.add_port(spec.name.clone()).map_err(|source| GroupError::Port { name: spec.name.clone(), source })?;
                // At most MAX_GUESTS guests: every index has an address.
                let net = NetConfig::nth_guest(index as u8).ok_or(GroupError::Size(index + 1))?;
                Vm::on_network(&spec.config, console(&spec.name), started, Box::new(port), net)
            }
        };
        match vm {
            Ok(vm) => vms.push((spec.name, vm)),
            Err(source) => return Err(GroupError::Guest { name: spec.name, source }),
        }
    }
    // The TAP's thread starts after the guests' devices exist (`sandbox::prepare` has run
    // for them: the TAP thread confines itself too).
    let tap = match (&switch, network.as_ref().and_then(|n| n.tap.as_deref())) {
        (Some(switch), Some(name)) => Some((name.to_string(), attach_tap(switch, name, seccomp)?)),
        _ => None,
    };
    Ok(Group { vms, switch, tap })
}

impl Group {
    /// Each guest, by name, in the order of the specs.
    pub fn guests(&self) -> impl Iterator<Item = (&str, &Vm)> {
        self.vms.iter().map(|(name, vm)| (name.as_str(), vm))
    }

    /// The guests' switch (`None` without a network).
    pub fn switch(&self) -> Option<Switch> {
        self.switch.clone()
    }

    /// Runs each guest on a thread of its own (named `vcpu-NAME`) and waits for all of
    /// them. The ends are in the order of the specs.
    pub fn run(self) -> Result<GroupEnds, GroupError> {
        self.run_with_controls(|_| ())
    }

    /// [`Group::run`], handing `on_running` the guests' controls once every guest's
    /// thread has started (see [`run_group_with_controls`]).
    pub fn run_with_controls(self, on_running: impl FnOnce(Vec<(String, VcpuControl)>)) -> Result<GroupEnds, GroupError> {
        let Group { vms, switch, tap } = self;
        let confine = vms.iter().any(|(_, vm)| vm.config.seccomp);
        let controls: Vec<(String, VcpuControl)> = vms.iter().map(|(name, vm)| (name.clone(), vm.control())).collect();
        let mut threads = Vec::with_capacity(vms.len());
        for (name, vm) in vms {
            let thread = std::thread::Builder::new().name(format!("vcpu-{name}")).spawn(move || vm.run());
            match thread {
                Ok(handle) => threads.push((name, handle)),
                // The guests already running stop at their own pace (their `--timeout`, or
                // their command's end); this one never started.
                Err(source) => {
                    for (_, handle) in threads {
                        let _ = handle.join();
                    }
                    return Err(GroupError::Thread { name, source });
                }
            }
        }
        on_running(controls);
        // Every guest's thread exists: the calling thread only waits for them and reports,
        // which the vCPU thread's filter covers (it is what `hv run`'s one vCPU thread does
        // after its guest stops).
        if confine {
            if let Err(e) = crate::sandbox::confine_current_thread(crate::sandbox::ThreadKind::Vcpu) {
                eprintln!("hv: {e}; the guests run on, this thread unconfined");
            }
        }
        let guests = threads
            .into_iter()
            .map(|(name, handle)| {
                let result = handle.join().unwrap_or(Err(VmError::GuestThreadPanicked));
                GuestEnd { name, result }
            })
            .collect();
        let tap = tap.map(|(name, port)| (name, port.stop()));
        Ok(GroupEnds { guests, switch: switch.as_ref().map(Switch::stats), tap })
    }
}
