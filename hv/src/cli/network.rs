//! One guest on the network (`hv run --tap NAME`, `hv restore FILE --tap NAME`, `hv run
//! --incoming ADDR --tap NAME`): a virtual switch with the guest's port and the host's
//! TAP device, made around a single [`crate::vmm::Vm`] so that everything a one-guest
//! `hv run` does (the control socket, snapshots, migration) works for it unchanged.
//!
//! The TAP is attached first, before the VM exists: `hv run --incoming ADDR --tap NAME`
//! must find out that its TAP cannot be attached before a guest arrives (once the
//! destination confirms, the source has ended and the guest can only run here). The TAP's
//! thread confines itself, so `sandbox::prepare` runs before it, as it does before a VM is
//! built.

use backend_drivers::frame_port::FramePort;
use backend_drivers::switch::tap::TapPort;
use backend_drivers::switch::{Switch, SwitchConfig};

use crate::devices::net::NetConfig;
use crate::devices::tap::attach_tap;
use crate::vmm::group::guest_name;

/// The switch of a one-guest network and its TAP port.
pub struct OneGuestNetwork {
    switch: Switch,
    tap_name: String,
    tap: TapPort,
}

impl OneGuestNetwork {
    /// A switch with the TAP device `tap_name` attached (its thread confined with
    /// `seccomp`), and the port of its guest (`g0`) for the VM to be built on.
    pub fn attach(tap_name: &str, seccomp: bool) -> Result<(OneGuestNetwork, Box<dyn FramePort>), String> {
        let switch = Switch::new(SwitchConfig::default());
        let name = guest_name(0);
        let port = switch.add_port(name.clone()).map_err(|e| format!("{name}: cannot make its port on the switch: {e}"))?;
        if seccomp {
            crate::sandbox::prepare().map_err(|e| e.to_string())?;
        }
        let tap = attach_tap(&switch, tap_name, seccomp).map_err(|e| e.to_string())?;
        Ok((OneGuestNetwork { switch, tap_name: tap_name.to_string(), tap }, Box::new(port)))
    }

    /// Who a new guest on this network is.
    pub fn new_guest() -> NetConfig {
        // Guest 0 always has an address (`nth_guest` is `None` only past 253).
        NetConfig::nth_guest(0).unwrap_or(NetConfig { mac: pv_abi::device::net::guest_mac(0), ipv4: [10, 0, 0, 2], prefix_len: 24, gateway: [10, 0, 0, 1] })
    }

    /// A handle on the switch (the control socket's `stats` shows its ports).
    pub fn switch(&self) -> Switch {
        self.switch.clone()
    }

    /// Stops the TAP's thread and, with `stats`, prints the switch's and the TAP's
    /// counters as `hv run --guests` does.
    pub fn finish(self, stats: bool) {
        let tap = self.tap.stop();
        if stats {
            eprintln!("virtual switch:\n{}", self.switch.stats());
            eprintln!("TAP {}: {tap:?}", self.tap_name);
        }
    }
}
