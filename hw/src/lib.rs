//! Frame I/O for sluice.
//!
//! Everything above this crate sees a network interface only as a [`Port`]: a batch of frames in, frames out,
//! and a kick. AF_XDP ([`xdp`]), AF_PACKET ([`packet`]) and the in-memory ring used by tests ([`mem`]) are three
//! implementations of that one trait, so the dataplane runs unchanged from byte buffers.

pub mod batch;
pub mod iface;
pub mod mem;
pub mod netns;
pub mod packet;
pub mod tun;
pub mod wait;
pub mod xdp;

pub use batch::{Batch, FrameMeta, FRAME_CAPACITY};

use std::io;

/// What a port knows about the interface it drives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Interface name, e.g. `veth0`.
    pub name: String,
    /// Kernel interface index (0 for in-memory ports).
    pub ifindex: u32,
    /// Hardware address used as the source of frames the appliance emits.
    pub mac: [u8; 6],
    /// Layer-3 MTU of the interface.
    pub mtu: u32,
    /// RX queue this port is bound to.
    pub queue: u32,
}

/// Errors from frame I/O. Kept small: the fast path only ever sees `Io`.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    #[error("interface {0} not found")]
    NoSuchInterface(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    /// The kernel refused a BPF object; `log` is the verifier's log when it gave one.
    #[error("{what}: {source}{}", if log.is_empty() { String::new() } else { format!("\nverifier log:\n{log}") })]
    Bpf {
        what: String,
        #[source]
        source: io::Error,
        log: String,
    },
    /// Another XDP program is attached to the interface already (ours is never left behind: it is attached
    /// through a BPF link that dies with the process).
    #[error("interface {0} already has an XDP program attached; remove it with `ip link set dev {0} xdp off`")]
    XdpAlreadyAttached(String),
}

impl HwError {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        HwError::Io {
            what: what.into(),
            source,
        }
    }
    pub fn last_os(what: impl Into<String>) -> Self {
        HwError::io(what, io::Error::last_os_error())
    }
}

pub type Result<T> = std::result::Result<T, HwError>;

/// One RX queue (and the matching TX queue) of one interface.
///
/// A worker owns its ports exclusively; nothing here is shared between threads.
pub trait Port: Send {
    fn info(&self) -> &PortInfo;

    /// Receives up to `batch.free()` frames, appending them to `batch` with this port's index `port_index`.
    /// Returns how many frames were appended. Never blocks.
    fn recv(&mut self, batch: &mut Batch, port_index: u16) -> Result<usize>;

    /// Queues one frame for transmission (the bytes are copied). Returns `Ok(false)` when the TX ring is full
    /// and the frame was not queued; the caller counts that as a drop.
    fn send(&mut self, frame: &[u8]) -> Result<bool>;

    /// Makes the device transmit what `send` queued (the TX kick) and reclaims completed TX buffers.
    fn flush(&mut self) -> Result<()>;

    /// True when the kernel's own stack also receives this interface's ARP and locally addressed traffic
    /// (AF_XDP with the pass-local program, AF_PACKET). The dataplane then leaves answering ARP and
    /// delivering to local addresses to the kernel, and treats frames flagged `kernel_has_copy` as copies.
    fn kernel_shares_interface(&self) -> bool;

    /// A file descriptor that becomes readable when frames wait, for workers that sleep instead of
    /// busy-polling. `None` for ports that cannot be waited on.
    fn poll_fd(&self) -> Option<i32> {
        None
    }

    /// Makes the frames of `flow` — a connection the dataplane bound to one of the box's own addresses
    /// (masquerade, the SNAT half of hairpin NAT) — come to the dataplane instead of the kernel stack
    /// (`add`), or stops it. Ports where the kernel does not pick frames away do nothing.
    fn steer_local_flow(&self, _flow: &LocalFlow, _add: bool) -> Result<()> {
        Ok(())
    }
}

/// A connection on one of the box's own addresses, as frame steering keys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LocalFlow {
    pub local: std::net::Ipv4Addr,
    pub remote: std::net::Ipv4Addr,
    /// TCP/UDP port on the box's side, or the ICMP echo identifier.
    pub local_port: u16,
    /// TCP/UDP port on the remote side (0 for ICMP).
    pub remote_port: u16,
    pub proto: u8,
}

/// Pins the calling thread to `core` (an index into the cores the process may run on).
/// Returns false when the core does not exist or pinning failed; callers log it and go on unpinned.
pub fn pin_current_thread(core: usize) -> bool {
    match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => core_affinity::set_for_current(ids[core % ids.len()]),
        _ => false,
    }
}
