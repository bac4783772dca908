//! AF_XDP ports: a thin in-house layer over the `libc` crate (no libbpf, no libxdp, no C build).
//!
//! One [`XdpPort`] = one AF_XDP socket bound to one (interface, queue), with a UMEM of its own: the first half
//! of the frames feed the fill ring (RX), the second half form a free list for TX, refilled from the completion
//! ring. Frames are copied in both directions (into the [`Batch`] on receive, out of the caller's slice on
//! send), so nothing above this module ever holds a UMEM pointer.
//!
//! Every port of an interface shares one [`XdpProgram`] (the redirect program and its `xsks`/`local_v4`/`local_v6`
//! maps). [`XdpPort::open`] finds or attaches it through a per-process registry keyed by (network namespace,
//! ifindex); [`XdpPort::with_program`] takes one explicitly.
//!
//! Besides the XSK, each port opens an AF_PACKET socket for ETH_P_ARP on its interface: the program passes ARP
//! to the kernel (which answers for its own addresses), and the tap copies those frames into the batch with
//! `kernel_has_copy = true` so the dataplane can learn neighbours from them. A second one, for ETH_P_IPV6
//! with a classic BPF filter, does the same for ICMPv6 neighbour solicitations and advertisements (the
//! program passes IPv6 multicast and the box's own IPv6 addresses to the kernel).

mod prog;
mod ring;

pub use prog::{
    steer_local_flow, steer_local_ports, AttachMode, XdpProgram, MAX_LOCAL_ADDRS, MAX_LOCAL_FLOWS,
};

use crate::{Batch, HwError, Port, PortInfo, Result, FRAME_CAPACITY};
use ring::Ring;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, Weak};

/// How the socket binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Zero-copy when the driver supports it, copy mode otherwise (veth: copy). The default.
    #[default]
    Auto,
    /// XDP_COPY.
    Copy,
    /// XDP_ZEROCOPY; fails with EOPNOTSUPP where the driver lacks it.
    ZeroCopy,
}

/// Settings of one AF_XDP port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// RX queue to bind.
    pub queue: u32,
    /// UMEM frames (half RX, half TX). Default 4096.
    pub frame_count: u32,
    /// UMEM frame size: 2048 or 4096 (a power of two, at least [`FRAME_CAPACITY`]). Default 2048.
    pub frame_size: u32,
    /// Entries of each of the four rings (a power of two). Default 2048.
    pub ring_size: u32,
    pub bind_mode: BindMode,
    /// Used when this port is the first of its interface and attaches the program.
    pub attach_mode: AttachMode,
    /// XDP_USE_NEED_WAKEUP: the kernel flags the rings when it needs a syscall to make progress. Default on.
    pub need_wakeup: bool,
}

impl Default for XdpConfig {
    fn default() -> Self {
        XdpConfig {
            queue: 0,
            frame_count: 4096,
            frame_size: 2048,
            ring_size: 2048,
            bind_mode: BindMode::Auto,
            attach_mode: AttachMode::Native,
            need_wakeup: true,
        }
    }
}

impl XdpConfig {
    pub fn queue(mut self, queue: u32) -> Self {
        self.queue = queue;
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(HwError::Unsupported(m));
        if !self.frame_size.is_power_of_two() || !(2048..=4096).contains(&self.frame_size) {
            return bad(format!(
                "frame_size {} must be 2048 or 4096",
                self.frame_size
            ));
        }
        if (self.frame_size as usize) < FRAME_CAPACITY {
            return bad(format!(
                "frame_size {} is below FRAME_CAPACITY {FRAME_CAPACITY}",
                self.frame_size
            ));
        }
        if !self.ring_size.is_power_of_two() || self.ring_size < 64 {
            return bad(format!(
                "ring_size {} must be a power of two >= 64",
                self.ring_size
            ));
        }
        if self.frame_count < 128 || self.frame_count & 1 == 1 {
            return bad(format!(
                "frame_count {} must be even and >= 128",
                self.frame_count
            ));
        }
        Ok(())
    }
}

/// Counters of one port (this process's side; the kernel's are in [`XdpPort::kernel_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpPortStats {
    pub rx_frames: u64,
    pub rx_arp_frames: u64,
    pub tx_frames: u64,
    /// `send` found no free TX frame or ring slot.
    pub tx_full: u64,
    /// sendto() kicks issued.
    pub tx_kicks: u64,
    /// Kicks answered EAGAIN/EBUSY/ENOBUFS (in copy mode: after every 32 frames).
    pub tx_kick_again: u64,
    /// recvfrom() wakeups for the fill ring.
    pub fill_wakeups: u64,
}

/// The kernel's per-socket counters (XDP_STATISTICS).
pub type KernelStats = libc::xdp_statistics;

type RegistryKey = (u64, u32); // (netns inode, ifindex)

fn registry() -> &'static Mutex<HashMap<RegistryKey, Weak<XdpProgram>>> {
    static REG: std::sync::OnceLock<Mutex<HashMap<RegistryKey, Weak<XdpProgram>>>> =
        std::sync::OnceLock::new();
    REG.get_or_init(Default::default)
}

fn current_netns_id() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// The program of `ifname` in the calling thread's namespace, attaching it in `mode` if no port of this
/// process holds it yet.
pub fn program_for(ifname: &str, mode: AttachMode) -> Result<Arc<XdpProgram>> {
    let ifindex = crate::iface::lookup(ifname)?.ifindex;
    let key = (current_netns_id(), ifindex);
    let mut reg = registry().lock().unwrap();
    if let Some(p) = reg.get(&key).and_then(Weak::upgrade) {
        if p.mode() != mode {
            return Err(HwError::Unsupported(format!(
                "{ifname}: program attached in {:?} mode, port asks for {mode:?}",
                p.mode()
            )));
        }
        return Ok(p);
    }
    let p = Arc::new(XdpProgram::attach(ifname, mode)?);
    reg.retain(|_, w| w.strong_count() > 0);
    reg.insert(key, Arc::downgrade(&p));
    Ok(p)
}

struct Umem {
    area: *mut u8,
    len: usize,
}

// SAFETY: the area is plain memory owned by one port.
unsafe impl Send for Umem {}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: unmapping what was mapped in `open_socket`.
        unsafe { libc::munmap(self.area as *mut libc::c_void, self.len) };
    }
}

/// An AF_XDP socket on one queue of one interface. See the module documentation.
pub struct XdpPort {
    info: PortInfo,
    // Field order is drop order: rings before the socket, the socket before the UMEM, the program last.
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    fd: OwnedFd,
    arp: OwnedFd,
    /// Copies of the neighbour solicitations and advertisements the kernel receives (the program passes
    /// multicast and the box's own IPv6 addresses to it), as `arp` is for ARP.
    nd: OwnedFd,
    arp_buf: Vec<u8>,
    /// Busy receive calls left before the ARP tap is polled again (a recvfrom per call cost 6–8 % of a
    /// worker's time at full load, for a socket that is almost always empty).
    arp_skip: u32,
    umem: Umem,
    frame_size: u32,
    tx_free: Vec<u64>,
    zero_copy: bool,
    need_wakeup: bool,
    stats: XdpPortStats,
    program: Arc<XdpProgram>,
}

impl XdpPort {
    /// Opens queue `cfg.queue` of `ifname` (in the calling thread's namespace), attaching the redirect program
    /// in `cfg.attach_mode` if this is the first port of the interface.
    pub fn open(ifname: &str, cfg: &XdpConfig) -> Result<XdpPort> {
        let program = program_for(ifname, cfg.attach_mode)?;
        Self::with_program(program, cfg)
    }

    /// Opens queue `cfg.queue` of the interface `program` is attached to (`cfg.attach_mode` is ignored).
    pub fn with_program(program: Arc<XdpProgram>, cfg: &XdpConfig) -> Result<XdpPort> {
        cfg.validate()?;
        let iface = crate::iface::lookup(program.ifname())?;
        if iface.ifindex != program.ifindex() {
            return Err(HwError::Unsupported(format!(
                "{}: program belongs to another namespace",
                iface.name
            )));
        }
        let modes: &[bool] = match cfg.bind_mode {
            BindMode::Auto => &[true, false],
            BindMode::Copy => &[false],
            BindMode::ZeroCopy => &[true],
        };
        let mut last = None;
        for &zc in modes {
            match Self::open_socket(&iface, cfg, zc, program.clone()) {
                Ok(p) => return Ok(p),
                Err(e) => {
                    let eopnotsupp = matches!(&e, HwError::Io { source, .. } if source.raw_os_error() == Some(libc::EOPNOTSUPP));
                    if zc && eopnotsupp && cfg.bind_mode == BindMode::Auto {
                        tracing::debug!(
                            ifname = iface.name,
                            "zero-copy not supported, binding in copy mode"
                        );
                        last = Some(e);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| HwError::Unsupported("no bind mode".into())))
    }

    fn open_socket(
        iface: &crate::iface::Interface,
        cfg: &XdpConfig,
        zero_copy: bool,
        program: Arc<XdpProgram>,
    ) -> Result<XdpPort> {
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(HwError::last_os("socket(AF_XDP)"));
        }
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let len = cfg.frame_count as usize * cfg.frame_size as usize;
        // SAFETY: anonymous private mapping, page aligned by construction. No setrlimit(MEMLOCK): pinning
        // works with CAP_IPC_LOCK and raising the limit needs CAP_SYS_RESOURCE, which the rig lacks.
        let area = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(HwError::last_os("mmap UMEM"));
        }
        let umem = Umem {
            area: area as *mut u8,
            len,
        };

        let reg = libc::xdp_umem_reg {
            addr: area as u64,
            len: len as u64,
            chunk_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::XDP_UMEM_REG, &reg, "XDP_UMEM_REG")?;
        for (opt, what) in [
            (libc::XDP_UMEM_FILL_RING, "XDP_UMEM_FILL_RING"),
            (libc::XDP_UMEM_COMPLETION_RING, "XDP_UMEM_COMPLETION_RING"),
            (libc::XDP_RX_RING, "XDP_RX_RING"),
            (libc::XDP_TX_RING, "XDP_TX_RING"),
        ] {
            setsockopt(&fd, opt, &cfg.ring_size, what)?;
        }

        // SAFETY: zeroed POD, filled by getsockopt.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut optlen = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: buffer and length describe `off`.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                &mut off as *mut _ as *mut libc::c_void,
                &mut optlen,
            )
        };
        if rc < 0 {
            return Err(HwError::last_os("getsockopt XDP_MMAP_OFFSETS"));
        }
        if optlen as usize != std::mem::size_of::<libc::xdp_mmap_offsets>() {
            return Err(HwError::Unsupported(
                "kernel without ring flags (XDP_MMAP_OFFSETS v1)".into(),
            ));
        }

        let raw = fd.as_raw_fd();
        let n = cfg.ring_size;
        let rx = Ring::map(raw, n, &off.rx, libc::XDP_PGOFF_RX_RING as u64, "RX")?;
        let tx = Ring::map(raw, n, &off.tx, libc::XDP_PGOFF_TX_RING as u64, "TX")?;
        let mut fill = Ring::map(raw, n, &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING, "fill")?;
        let comp = Ring::map(
            raw,
            n,
            &off.cr,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            "completion",
        )?;

        // RX frames: as many of the first half as the fill ring holds; the rest of the UMEM is for TX.
        let fs = cfg.frame_size as u64;
        let rx_frames = (cfg.frame_count / 2).min(n);
        for i in 0..rx_frames {
            fill.prod_write(i as u64 * fs);
        }
        fill.prod_submit();
        let tx_frames = (cfg.frame_count - rx_frames).min(n);
        let tx_free: Vec<u64> = (rx_frames..rx_frames + tx_frames)
            .rev()
            .map(|i| i as u64 * fs)
            .collect();

        let mut flags = if zero_copy {
            libc::XDP_ZEROCOPY
        } else {
            libc::XDP_COPY
        };
        if cfg.need_wakeup {
            flags |= libc::XDP_USE_NEED_WAKEUP;
        }
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: iface.ifindex,
            sxdp_queue_id: cfg.queue,
            sxdp_shared_umem_fd: 0,
        };
        // A socket closed just before may still hold the queue for a moment (EBUSY): retry with back-off.
        let mut delay = std::time::Duration::from_millis(2);
        loop {
            // SAFETY: sa is a valid sockaddr_xdp.
            let rc = unsafe {
                libc::bind(
                    raw,
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EBUSY)
                && delay < std::time::Duration::from_millis(500)
            {
                std::thread::sleep(delay);
                delay *= 2;
                continue;
            }
            let mode = if zero_copy { "zero-copy" } else { "copy" };
            return Err(HwError::io(
                format!("bind AF_XDP to {} queue {} ({mode})", iface.name, cfg.queue),
                err,
            ));
        }

        program.register(cfg.queue, raw)?;
        let arp = open_arp_tap(iface.ifindex)?;
        let nd = open_nd_tap(iface.ifindex)?;
        tracing::debug!(
            ifname = iface.name,
            queue = cfg.queue,
            zero_copy,
            "AF_XDP port open"
        );

        Ok(XdpPort {
            info: PortInfo {
                name: iface.name.clone(),
                ifindex: iface.ifindex,
                mac: iface.mac,
                mtu: iface.mtu,
                queue: cfg.queue,
            },
            fill,
            comp,
            rx,
            tx,
            fd,
            arp,
            nd,
            arp_buf: vec![0; FRAME_CAPACITY],
            arp_skip: 0,
            umem,
            frame_size: cfg.frame_size,
            tx_free,
            zero_copy,
            need_wakeup: cfg.need_wakeup,
            stats: XdpPortStats::default(),
            program,
        })
    }

    /// The program (and its `local_v4` map) this port's interface runs.
    pub fn program(&self) -> &Arc<XdpProgram> {
        &self.program
    }

    /// True when the socket is bound in zero-copy mode.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    pub fn stats(&self) -> XdpPortStats {
        self.stats
    }

    /// The kernel's counters for this socket (drops for a full RX ring, an empty fill ring, invalid descriptors).
    pub fn kernel_stats(&self) -> Result<KernelStats> {
        // SAFETY: zeroed POD, filled by getsockopt.
        let mut st: KernelStats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<KernelStats>() as libc::socklen_t;
        // SAFETY: buffer and length describe `st`.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                &mut st as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        if rc < 0 {
            return Err(HwError::last_os("getsockopt XDP_STATISTICS"));
        }
        Ok(st)
    }

    fn frame(&self, addr: u64, len: usize) -> &[u8] {
        assert!(
            addr as usize + len <= self.umem.len,
            "descriptor outside UMEM"
        );
        // SAFETY: bounds checked above; the frame is ours (consumed from RX / not yet on TX) while borrowed.
        unsafe { std::slice::from_raw_parts(self.umem.area.add(addr as usize), len) }
    }

    fn reclaim_completions(&mut self) {
        let n = self.comp.cons_ready(u32::MAX);
        for i in 0..n {
            let addr = self.comp.cons_read(i);
            self.tx_free.push(addr & !(self.frame_size as u64 - 1));
        }
        if n > 0 {
            self.comp.cons_release(n);
        }
    }

    fn kick_tx(&mut self) -> Result<()> {
        // In copy mode the kernel transmits at most 32 frames per sendto() and then answers EAGAIN even though
        // it made progress: keep kicking while the ring holds frames and the kernel's consumer index moves.
        // In zero-copy mode the driver drains the ring itself: one kick, and only when it asks (need_wakeup).
        let mut pending = self.tx.prod_pending();
        let mut rounds = 0;
        while pending > 0 {
            if self.zero_copy && self.need_wakeup && !self.tx.needs_wakeup() {
                break;
            }
            self.stats.tx_kicks += 1;
            // SAFETY: sendto with no buffer and no address is the documented TX kick.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    // Batch limit reached, device busy, completion ring full: retry below if it progressed.
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                        self.stats.tx_kick_again += 1
                    }
                    Some(libc::ENETDOWN) | Some(libc::ENXIO) => break,
                    _ => return Err(HwError::io(format!("TX kick on {}", self.info.name), err)),
                }
            }
            if self.zero_copy {
                break;
            }
            let now = self.tx.prod_pending();
            rounds += 1;
            if now >= pending || rounds > 256 {
                break; // no progress: the next flush tries again
            }
            pending = now;
        }
        Ok(())
    }

    fn recv_arp(&mut self, batch: &mut Batch, port_index: u16) -> usize {
        let mut n = 0;
        for fd in [self.arp.as_raw_fd(), self.nd.as_raw_fd()] {
            while batch.free() > 0 {
                let Some((len, pkttype)) = recv_ll(fd, &mut self.arp_buf) else {
                    break;
                };
                if pkttype == libc::PACKET_OUTGOING {
                    continue; // our own (the kernel's) transmission
                }
                batch.push(&self.arp_buf[..len], port_index, true);
                n += 1;
            }
        }
        self.stats.rx_arp_frames += n as u64;
        n
    }
}

/// recvfrom on a packet socket into `buf`; returns (length, sll_pkttype), None when nothing waits.
fn recv_ll(fd: RawFd, buf: &mut [u8]) -> Option<(usize, u8)> {
    // SAFETY: zeroed POD filled by recvfrom.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut sl = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: buf and sll are valid for writes of the given lengths.
    let rc = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_DONTWAIT,
            &mut sll as *mut _ as *mut libc::sockaddr,
            &mut sl,
        )
    };
    if rc <= 0 {
        return None;
    }
    Some(((rc as usize).min(buf.len()), sll.sll_pkttype))
}

pub(crate) fn setsockopt<T>(fd: &OwnedFd, opt: i32, val: &T, what: &str) -> Result<()> {
    // SAFETY: val points at a T of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            val as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(HwError::last_os(format!("setsockopt {what}")));
    }
    Ok(())
}

/// A non-blocking AF_PACKET socket bound to `ifindex` receiving only `protocol` (host order).
pub(crate) fn packet_socket(ifindex: u32, protocol: u16) -> Result<OwnedFd> {
    let proto_be = protocol.to_be();
    // SAFETY: plain socket(2).
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto_be as i32,
        )
    };
    if raw < 0 {
        return Err(HwError::last_os("socket(AF_PACKET)"));
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: zeroed sockaddr_ll, then filled.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto_be;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll.
    let rc = unsafe {
        libc::bind(
            raw,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(HwError::last_os(format!(
            "bind AF_PACKET to ifindex {ifindex}"
        )));
    }
    // Our own transmissions are not input (best effort: PACKET_IGNORE_OUTGOING exists since 4.20).
    let one: libc::c_int = 1;
    // SAFETY: int option.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Ok(fd)
}

const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Busy receive calls between two polls of the ARP tap.
const ARP_POLL_EVERY: u32 = 64;

fn open_arp_tap(ifindex: u32) -> Result<OwnedFd> {
    packet_socket(ifindex, libc::ETH_P_ARP as u16)
}

/// A classic BPF filter keeping only ICMPv6 neighbour solicitations and advertisements that directly follow
/// the IPv6 header (an NS/NA behind extension headers is not copied; the dataplane validates the rest).
fn nd_filter() -> [libc::sock_filter; 9] {
    let f = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    [
        f(0x28, 0, 0, 12),     // ldh [12]          ethertype
        f(0x15, 0, 6, 0x86dd), // jeq IPv6 ? next : drop
        f(0x30, 0, 0, 20),     // ldb [20]          next header
        f(0x15, 0, 4, 58),     // jeq ICMPv6 ? next : drop
        f(0x30, 0, 0, 54),     // ldb [54]          ICMPv6 type
        f(0x35, 0, 2, 135),    // jge 135 ? next : drop
        f(0x25, 1, 0, 136),    // jgt 136 ? drop : keep
        f(0x06, 0, 0, 0xffff), // keep: ret 65535
        f(0x06, 0, 0, 0),      // drop: ret 0
    ]
}

fn open_nd_tap(ifindex: u32) -> Result<OwnedFd> {
    let fd = packet_socket(ifindex, libc::ETH_P_IPV6 as u16)?;
    let filter = nd_filter();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points at `filter`, alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &prog as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(HwError::last_os(
            "SO_ATTACH_FILTER on the neighbour discovery tap",
        ));
    }
    // Frames that arrived between bind and the filter are drained by the dataplane as kernel copies
    // (it keeps only NS/NA from them).
    Ok(fd)
}

impl Port for XdpPort {
    fn steer_local_flow(&self, flow: &crate::LocalFlow, add: bool) -> Result<()> {
        steer_local_flow(flow, add)
    }

    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn recv(&mut self, batch: &mut Batch, port_index: u16) -> Result<usize> {
        let n = self.rx.cons_ready(batch.free() as u32);
        let mask = !(self.frame_size as u64 - 1);
        for i in 0..n {
            let d = self.rx.cons_read(i);
            let frame = self.frame(d.addr, d.len as usize);
            let len = frame.len().min(FRAME_CAPACITY);
            batch.push_with(port_index, false, |slot| {
                slot[..len].copy_from_slice(&frame[..len]);
                len
            });
            // The frame is copied out: hand it straight back to the kernel. The fill ring has room, since
            // every RX frame came from it.
            self.fill.prod_write(d.addr & mask);
        }
        if n > 0 {
            self.rx.cons_release(n);
            self.fill.prod_submit();
            self.stats.rx_frames += n as u64;
        }
        if self.need_wakeup && self.fill.needs_wakeup() {
            self.stats.fill_wakeups += 1;
            // SAFETY: recvfrom with no buffer is the documented fill-ring wakeup.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
        // ARP is rare: poll its tap when the ring ran dry, and at least every ARP_POLL_EVERY busy calls.
        let arp = if n == 0 || self.arp_skip == 0 {
            self.arp_skip = ARP_POLL_EVERY;
            self.recv_arp(batch, port_index)
        } else {
            self.arp_skip -= 1;
            0
        };
        Ok(n as usize + arp)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool> {
        if frame.len() > self.frame_size as usize {
            self.stats.tx_full += 1;
            return Ok(false);
        }
        if self.tx_free.is_empty() {
            self.reclaim_completions();
        }
        if self.tx_free.is_empty() || self.tx.prod_free() == 0 {
            self.stats.tx_full += 1;
            return Ok(false);
        }
        let addr = self.tx_free.pop().unwrap();
        // SAFETY: addr is a free TX frame of frame_size bytes inside the UMEM, owned by us until submitted.
        unsafe {
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                self.umem.area.add(addr as usize),
                frame.len(),
            )
        };
        self.tx.prod_write(libc::xdp_desc {
            addr,
            len: frame.len() as u32,
            options: 0,
        });
        self.stats.tx_frames += 1;
        Ok(true)
    }

    fn flush(&mut self) -> Result<()> {
        self.tx.prod_submit();
        self.kick_tx()?;
        self.reclaim_completions();
        Ok(())
    }

    fn kernel_shares_interface(&self) -> bool {
        true
    }

    fn poll_fd(&self) -> Option<i32> {
        Some(self.fd.as_raw_fd())
    }
}

impl Drop for XdpPort {
    fn drop(&mut self) {
        self.program.unregister(self.info.queue);
    }
}
