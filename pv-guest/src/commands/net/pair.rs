//! What the network commands share: the sockets' memory (in a static: the kernel has no
//! heap and a 64 KiB stack), building a stack on a device or a pair of stacks on the
//! loopback wire, and the poll loops that drive them.

use pv_abi::BootInfo;
use smoltcp::iface::SocketStorage;
use smoltcp::wire::Ipv4Address;

use crate::arch::cpu_local::{VcpuCell, VcpuRefMut};
use crate::net::device::FrameIo;
use crate::net::http::{HttpBuffers, HttpServer};
use crate::net::http_get::{GetError, HttpClient, HttpGetBuffers, HttpResponse, StartError};
use crate::net::loopback::{LoopbackEnd, LoopbackWire};
use crate::net::ping::PingBuffers;
use crate::net::stack::{NetConfig, NetStack};
use crate::println;

/// Sockets one stack holds: a ping socket, the server's, the client's, one spare.
pub const SOCKETS: usize = 4;
/// The longest a device stack sleeps between polls with nothing due, in microseconds
/// (an upcall for an arriving frame wakes it sooner).
const MAX_IDLE_WAIT_US: u64 = 10_000;
/// The host byte of the loopback peer's address and MAC (A keeps the guest's own).
pub const LOOPBACK_PEER_HOST: u8 = 3;

/// The memory of every socket the commands open, and the loopback wire.
pub struct NetMemory {
    /// The in-guest cable between the two loopback stacks.
    pub wire: LoopbackWire,
    /// The ping socket's queues.
    pub ping: PingBuffers,
    /// The HTTP server's socket buffers.
    pub server: HttpBuffers,
    /// The HTTP client's socket buffers.
    pub client: HttpGetBuffers,
}

/// About 60 KiB: in `.bss`, not on the stack.
static MEMORY: VcpuCell<NetMemory> = VcpuCell::new(NetMemory {
    wire: LoopbackWire::new(),
    ping: PingBuffers::new(),
    server: HttpBuffers::new(),
    client: HttpGetBuffers::new(),
});

/// The sockets' memory, for the length of one command.
pub fn memory() -> VcpuRefMut<'static, NetMemory> {
    let mut memory = MEMORY.borrow_mut();
    memory.wire.reset();
    memory
}

/// The guest's stack on its network device, or `None` (after saying why).
pub fn device_stack<'s, F: FrameIo>(info: &BootInfo, io: F, storage: &'s mut [SocketStorage<'s>]) -> Option<NetStack<'s, F>> {
    let config = NetConfig::from_boot_info(info);
    NetStack::new(config, io, storage, crate::net::kernel_clock(info))
        .map_err(|e| println!("net: the boot-info page's network identity is unusable: {e:?}"))
        .ok()
}

/// Two stacks on the loopback wire: A with the guest's own identity, B as its peer.
pub fn loopback_stacks<'s>(
    info: &BootInfo,
    wire: &'s LoopbackWire,
    storage_a: &'s mut [SocketStorage<'s>],
    storage_b: &'s mut [SocketStorage<'s>],
) -> Option<(NetStack<'s, LoopbackEnd<'s>>, NetStack<'s, LoopbackEnd<'s>>)> {
    let config = NetConfig::from_boot_info(info);
    let clock = crate::net::kernel_clock(info);
    let (end_a, end_b) = wire.ends();
    let a = NetStack::new(config, end_a, storage_a, clock);
    let b = NetStack::new(config.with_host(LOOPBACK_PEER_HOST), end_b, storage_b, clock);
    match (a, b) {
        (Ok(a), Ok(b)) => Some((a, b)),
        (Err(e), _) | (_, Err(e)) => {
            println!("net: cannot build the loopback stacks: {e:?}");
            None
        }
    }
}

/// Polls a device stack, then waits for the device until the stack has work due (at
/// most [`MAX_IDLE_WAIT_US`]).
pub fn poll_and_wait<F: FrameIo>(stack: &mut NetStack<'_, F>) {
    stack.poll();
    let delay = stack.poll_delay_us().unwrap_or(MAX_IDLE_WAIT_US).min(MAX_IDLE_WAIT_US);
    if delay > 0 {
        stack.device.io.wait(delay);
    }
}

/// The loopback peer's turn: B polls and its server moves on. Returns the TSC cycles
/// B's stack spent in its poll (the cost of handling what A sent).
pub fn pump_peer(b: &mut NetStack<'_, LoopbackEnd<'_>>, server: &mut HttpServer) -> u64 {
    let start = b.clock.ticks();
    b.poll();
    let spent = b.clock.ticks().saturating_sub(start);
    server.step(b);
    spent
}

/// Why a request over the loopback wire failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopbackGetError {
    /// The client could not start it.
    Start(StartError),
    /// The client gave up on the response.
    Get(GetError),
    /// No response within the time allowed.
    Timeout,
}

/// Sends `request` from A's client (from `local_port`) to B's server and runs both
/// stacks until the response is complete or `timeout_us` has passed.
pub fn loopback_get(
    a: &mut NetStack<'_, LoopbackEnd<'_>>,
    client: &mut HttpClient,
    b: &mut NetStack<'_, LoopbackEnd<'_>>,
    server: &mut HttpServer,
    local_port: u16,
    request: &[u8],
    timeout_us: u64,
) -> Result<HttpResponse, LoopbackGetError> {
    let deadline = a.clock.ticks().saturating_add(a.clock.ticks_in(timeout_us));
    client.start(a, b.iface.ipv4_addr().unwrap_or(Ipv4Address::UNSPECIFIED), local_port, request).map_err(LoopbackGetError::Start)?;
    while a.clock.ticks() < deadline {
        a.poll();
        if let Some(done) = client.step(a) {
            return done.map_err(LoopbackGetError::Get);
        }
        pump_peer(b, server);
    }
    Err(LoopbackGetError::Timeout)
}
