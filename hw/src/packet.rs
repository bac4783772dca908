//! The fallback backend: an AF_PACKET socket (SOCK_RAW, ETH_P_ALL) bound to one interface.
//!
//! The kernel stack sees every frame too, so every received frame is flagged `kernel_has_copy`. Frames this
//! host transmits (PACKET_OUTGOING) are not input and are skipped. Receive is batched with `recvmmsg`, transmit
//! with `sendmmsg` at `flush`.

use crate::{Batch, HwError, Port, PortInfo, Result, FRAME_CAPACITY};
use std::os::fd::{AsRawFd, OwnedFd};

/// Frames moved per recvmmsg/sendmmsg call.
pub const PACKET_BATCH: usize = 64;

/// An AF_PACKET port. `queue` in its [`PortInfo`] is always 0 (the socket sees all queues).
pub struct PacketPort {
    info: PortInfo,
    fd: OwnedFd,
    rx_bufs: Vec<u8>,
    rx_addrs: Vec<libc::sockaddr_ll>,
    tx_bufs: Vec<u8>,
    tx_lens: Vec<usize>,
    stats: PacketPortStats,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketPortStats {
    pub rx_frames: u64,
    pub rx_outgoing_skipped: u64,
    pub tx_frames: u64,
    /// Frames `flush` could not hand to the kernel (socket buffer full).
    pub tx_dropped: u64,
}

// SAFETY: the raw pointers built for recvmmsg/sendmmsg live only during a call.
unsafe impl Send for PacketPort {}

impl PacketPort {
    /// Opens `ifname` in the calling thread's network namespace.
    pub fn open(ifname: &str) -> Result<PacketPort> {
        let iface = crate::iface::lookup(ifname)?;
        let fd = crate::xdp::packet_socket(iface.ifindex, libc::ETH_P_ALL as u16)?;
        Ok(PacketPort {
            info: PortInfo {
                name: iface.name,
                ifindex: iface.ifindex,
                mac: iface.mac,
                mtu: iface.mtu,
                queue: 0,
            },
            fd,
            rx_bufs: vec![0; PACKET_BATCH * FRAME_CAPACITY],
            // SAFETY: sockaddr_ll is POD.
            rx_addrs: vec![unsafe { std::mem::zeroed() }; PACKET_BATCH],
            tx_bufs: vec![0; PACKET_BATCH * FRAME_CAPACITY],
            tx_lens: Vec::with_capacity(PACKET_BATCH),
            stats: PacketPortStats::default(),
        })
    }

    pub fn stats(&self) -> PacketPortStats {
        self.stats
    }

    fn send_pending(&mut self) -> Result<()> {
        let n = self.tx_lens.len();
        if n == 0 {
            return Ok(());
        }
        let mut iov: Vec<libc::iovec> = (0..n)
            .map(|i| libc::iovec {
                iov_base: self.tx_bufs[i * FRAME_CAPACITY..].as_mut_ptr() as *mut libc::c_void,
                iov_len: self.tx_lens[i],
            })
            .collect();
        // SAFETY: mmsghdr is POD; each points at one iovec above, alive during the call.
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut sent = 0;
        while sent < n {
            // SAFETY: msgs[sent..] are valid headers (the socket is bound, so no address is needed).
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[sent..].as_mut_ptr(),
                    (n - sent) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::ENETDOWN) => break,
                    _ => {
                        self.tx_lens.clear();
                        return Err(HwError::io(format!("sendmmsg on {}", self.info.name), err));
                    }
                }
            }
            if rc == 0 {
                break;
            }
            sent += rc as usize;
        }
        self.stats.tx_frames += sent as u64;
        self.stats.tx_dropped += (n - sent) as u64;
        self.tx_lens.clear();
        Ok(())
    }
}

impl Port for PacketPort {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn recv(&mut self, batch: &mut Batch, port_index: u16) -> Result<usize> {
        let mut total = 0;
        loop {
            let want = batch.free().min(PACKET_BATCH);
            if want == 0 {
                break;
            }
            let mut iov: Vec<libc::iovec> = (0..want)
                .map(|i| libc::iovec {
                    iov_base: self.rx_bufs[i * FRAME_CAPACITY..].as_mut_ptr() as *mut libc::c_void,
                    iov_len: FRAME_CAPACITY,
                })
                .collect();
            let addrs = self.rx_addrs.as_mut_ptr();
            // SAFETY: each header points at its own iovec and sockaddr_ll, alive during the call.
            let mut msgs: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .enumerate()
                .map(|(i, v)| {
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_iov = v;
                    m.msg_hdr.msg_iovlen = 1;
                    m.msg_hdr.msg_name = unsafe { addrs.add(i) } as *mut libc::c_void;
                    m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                    m
                })
                .collect();
            // SAFETY: as above; MSG_DONTWAIT never blocks.
            let rc = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    want as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                if matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
                    break;
                }
                return Err(HwError::io(format!("recvmmsg on {}", self.info.name), err));
            }
            let got = rc as usize;
            for (i, m) in msgs.iter().enumerate().take(got) {
                if self.rx_addrs[i].sll_pkttype == libc::PACKET_OUTGOING {
                    self.stats.rx_outgoing_skipped += 1;
                    continue;
                }
                let len = (m.msg_len as usize).min(FRAME_CAPACITY);
                batch.push(
                    &self.rx_bufs[i * FRAME_CAPACITY..i * FRAME_CAPACITY + len],
                    port_index,
                    true,
                );
                total += 1;
            }
            if got < want {
                break;
            }
        }
        self.stats.rx_frames += total as u64;
        Ok(total)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool> {
        if frame.len() > FRAME_CAPACITY {
            return Ok(false);
        }
        if self.tx_lens.len() == PACKET_BATCH {
            self.send_pending()?;
        }
        let i = self.tx_lens.len();
        self.tx_bufs[i * FRAME_CAPACITY..i * FRAME_CAPACITY + frame.len()].copy_from_slice(frame);
        self.tx_lens.push(frame.len());
        Ok(true)
    }

    fn flush(&mut self) -> Result<()> {
        self.send_pending()
    }

    fn kernel_shares_interface(&self) -> bool {
        true
    }

    fn poll_fd(&self) -> Option<i32> {
        Some(self.fd.as_raw_fd())
    }
}
