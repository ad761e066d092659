//! One guest on the network (`hv run --tap NAME`, `hv restore FILE --tap NAME`, `hv run
//! --incoming ADDR --tap NAME`): a virtual switch with the guest's port and the host's
//! TAP device, made around a single [`crate::vmm::Vm`] so that everything a one-guest
//! `hv run` does (the control socket, snapshots, migration) works for it unchanged.
//!
//! The order is the one `vmm::group` uses for several guests: the switch and the guest's
//! port first (the VM's network backend needs its port when it is built), the TAP last
//! (its thread confines itself, which `sandbox::prepare`, run while the VM is built,
//! makes possible).

use backend_drivers::frame_port::FramePort;
use backend_drivers::switch::tap::TapPort;
use backend_drivers::switch::{Switch, SwitchConfig};

use crate::devices::net::NetConfig;
use crate::devices::tap::{attach_tap, AttachTapError};
use crate::vmm::group::guest_name;

/// The switch of a one-guest network and, once attached, its TAP port.
pub struct OneGuestNetwork {
    switch: Switch,
    tap_name: String,
    tap: Option<TapPort>,
}

impl OneGuestNetwork {
    /// A switch for TAP device `tap_name`, and the port of its guest (`g0`, the first
    /// guest's address: `NetConfig::nth_guest(0)`), for the VM to be built on.
    pub fn new(tap_name: &str) -> Result<(OneGuestNetwork, Box<dyn FramePort>), String> {
        let switch = Switch::new(SwitchConfig::default());
        let name = guest_name(0);
        let port = switch.add_port(name.clone()).map_err(|e| format!("{name}: cannot make its port on the switch: {e}"))?;
        Ok((OneGuestNetwork { switch, tap_name: tap_name.to_string(), tap: None }, Box::new(port)))
    }

    /// Who a new guest on this network is.
    pub fn new_guest() -> NetConfig {
        // Guest 0 always has an address (`nth_guest` is `None` only past 253).
        NetConfig::nth_guest(0).unwrap_or(NetConfig { mac: pv_abi::device::net::guest_mac(0), ipv4: [10, 0, 0, 2], prefix_len: 24, gateway: [10, 0, 0, 1] })
    }

    /// Attaches the TAP device as the switch's second port (after the VM exists).
    pub fn attach_tap(&mut self, seccomp: bool) -> Result<(), AttachTapError> {
        self.tap = Some(attach_tap(&self.switch, &self.tap_name, seccomp)?);
        Ok(())
    }

    /// A handle on the switch (the control socket's `stats` shows its ports).
    pub fn switch(&self) -> Switch {
        self.switch.clone()
    }

    /// Stops the TAP's thread and, with `stats`, prints the switch's and the TAP's
    /// counters as `hv run --guests` does.
    pub fn finish(self, stats: bool) {
        let tap = self.tap.map(TapPort::stop);
        if stats {
            eprintln!("virtual switch:\n{}", self.switch.stats());
            if let Some(tap) = tap {
                eprintln!("TAP {}: {tap:?}", self.tap_name);
            }
        }
    }
}
