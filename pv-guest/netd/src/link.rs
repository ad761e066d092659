//! The network device as this task sees it: the rings and buffers the kernel mapped at
//! the addresses `pv_netstack::handoff` fixes, reached through plain pointers; the
//! doorbells rung with an `out` of its own (the kernel opened the ports in the TSS's
//! I/O bitmap); and the frontend over them as the stack's [`FrameIo`].

use core::sync::atomic::{fence, AtomicU32, Ordering};

use frontend_drivers::net::{NetBuffer, NetFront};
use frontend_drivers::Doorbell;
use pv_abi::addr::PseudoFrame;
use pv_abi::ring::SharedPage;
use pv_netstack::device::FrameIo;
use pv_netstack::handoff::{Handoff, BUFFERS_VA, RINGS_VA, RX_BUFFERS, TX_BUFFERS};

/// Bytes in a page.
const PAGE: usize = 4096;

/// A page the kernel mapped into this task (user, read-write), by its address.
#[derive(Clone, Copy)]
pub struct MappedPage {
    va: usize,
}

impl MappedPage {
    /// The page at `va`, which the kernel maps for the task before it starts (the ring
    /// and buffer window of `pv_netstack::handoff`) and never unmaps while it runs.
    fn at(va: u64) -> Self {
        MappedPage { va: va as usize }
    }

    /// The address of `offset` in the page (taken modulo the page: never outside it).
    fn ptr(&self, offset: usize) -> *mut u8 {
        (self.va + offset % PAGE) as *mut u8
    }
}

impl SharedPage for MappedPage {
    fn load_u32(&self, offset: usize) -> u32 {
        // SAFETY: the page is mapped read-write for the task's whole life (MappedPage::at),
        // the ring only uses 4-byte-aligned index offsets inside it, and AtomicU32 has
        // u32's layout; the backend writes it concurrently, hence the atomic.
        let cell = unsafe { &*(self.ptr(offset & !3) as *const AtomicU32) };
        cell.load(Ordering::Acquire)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        // SAFETY: as in load_u32.
        let cell = unsafe { &*(self.ptr(offset & !3) as *const AtomicU32) };
        cell.store(value, Ordering::Release);
    }

    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        let len = buf.len().min(PAGE - offset % PAGE);
        // SAFETY: the source lies inside the mapped page for `len` bytes and `buf` is
        // our own memory, so the two do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr(offset), buf.as_mut_ptr(), len) };
    }

    fn write_bytes(&self, offset: usize, data: &[u8]) {
        let len = data.len().min(PAGE - offset % PAGE);
        // SAFETY: as in read_bytes, the other way round.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr(offset), len) };
    }

    fn full_fence(&self) {
        fence(Ordering::SeqCst);
    }
}

/// A doorbell rung from ring 3: one `out` to the backend's port.
#[derive(Clone, Copy)]
pub struct PortDoorbell {
    port: u16,
}

impl Doorbell for PortDoorbell {
    fn ring(&self) {
        // SAFETY: the kernel opened this port (the device's doorbell, from the handoff)
        // in the TSS's I/O bitmap before starting the task; an `out` to it only wakes
        // the backend. Without that permission the CPU raises #GP and the kernel ends
        // the task: no memory is touched either way.
        unsafe { core::arch::asm!("out dx, al", in("dx") self.port, in("al") 0u8, options(nomem, nostack, preserves_flags)) };
    }
}

/// The network frontend as this task makes it (its grant-table type is never used:
/// the buffers come granted).
pub type Front = NetFront<MappedPage, MappedPage, MappedPage, PortDoorbell, TX_BUFFERS, RX_BUFFERS>;

/// The frontend over everything the handoff describes.
pub fn front(h: &Handoff) -> Front {
    let tx_buffers: [NetBuffer<MappedPage>; TX_BUFFERS] = core::array::from_fn(|i| NetBuffer { frame: PseudoFrame::new(h.tx_frames[i]), page: MappedPage::at(BUFFERS_VA + (i * PAGE) as u64) });
    let rx_buffers: [NetBuffer<MappedPage>; RX_BUFFERS] =
        core::array::from_fn(|i| NetBuffer { frame: PseudoFrame::new(h.rx_frames[i]), page: MappedPage::at(BUFFERS_VA + ((TX_BUFFERS + i) * PAGE) as u64) });
    NetFront::with_persistent_grants(
        MappedPage::at(RINGS_VA),
        MappedPage::at(RINGS_VA + PAGE as u64),
        h.tx_grants,
        h.rx_grants,
        tx_buffers,
        rx_buffers,
        PortDoorbell { port: h.tx_doorbell_port },
        PortDoorbell { port: h.rx_doorbell_port },
    )
}

/// The frontend as the stack's link: `send` drops a frame (and counts it) when every
/// transmit buffer is in flight, as the kernel's does; `recv` keeps the receive ring
/// stocked and takes the next frame.
pub struct FrontLink {
    /// The frontend.
    pub front: Front,
    /// Frames dropped because no transmit buffer was free.
    pub dropped: u64,
}

impl FrameIo for FrontLink {
    fn send(&mut self, frame: &[u8]) {
        let _ = self.front.reap_tx();
        if self.front.transmit(frame).is_err() {
            self.dropped += 1;
        }
    }

    fn recv(&mut self, buffer: &mut [u8]) -> Option<usize> {
        let _ = self.front.post_rx_buffers();
        // A malformed answer costs its buffer's turn, not the frames behind it; the ring
        // bounds how many there can be.
        for _ in 0..=RX_BUFFERS {
            match self.front.receive_into(buffer) {
                Ok(found) => return found,
                Err(_) => continue,
            }
        }
        None
    }
}
