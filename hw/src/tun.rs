//! The exception path to the kernel stack: a TUN device (layer 3, no link layer, no ARP).
//!
//! The dataplane writes what its INPUT hook accepted into the TUN, where the kernel receives it as if it
//! had arrived on an interface of its own; the kernel routes what it sends itself into the TUN (the
//! control plane points its output routes there), and the dataplane reads it and runs it through
//! OUTPUT and POSTROUTING to the wire. INPUT and OUTPUT are then sluice's hooks, as in the kernel
//! (VPP's linux-cp, DPDK's exception path). TUN rather than TAP: between the dataplane and the kernel
//! there is no neighbour to resolve.
//!
//! The device is multi-queue (`IFF_MULTI_QUEUE`): each worker opens its own queue of the same device, and
//! the kernel spreads what it sends over the queues by flow. No offloads are turned on, so the kernel
//! hands over whole packets with complete checksums (no GSO, no CHECKSUM_PARTIAL).

use crate::{HwError, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Largest packet read from the device in one go.
pub const TUN_MAX_PACKET: usize = 65_535;

/// One queue of a TUN device, non-blocking.
pub struct TunQueue {
    fd: OwnedFd,
    name: String,
    buf: Vec<u8>,
    stats: TunStats,
}

/// Counters of one queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Writes the kernel refused (queue full, device down).
    pub tx_errors: u64,
}

impl TunQueue {
    /// Opens (creating it when it does not exist) queue of the TUN device `name` in the calling thread's
    /// network namespace. The device lives as long as one of its queues is open (it is not persistent).
    pub fn open(name: &str) -> Result<TunQueue> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(HwError::Unsupported(format!(
                "TUN device name {name:?} must be 1 to {} bytes",
                libc::IFNAMSIZ - 1
            )));
        }
        // SAFETY: the path is a valid NUL-terminated string.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(HwError::last_os("open /dev/net/tun"));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is plain old data; all-zero is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE) as i16;
        // SAFETY: TUNSETIFF reads and writes the ifreq, which lives across the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
        if rc < 0 {
            return Err(HwError::last_os(format!("TUNSETIFF {name}")));
        }
        Ok(TunQueue {
            fd,
            name: name.to_string(),
            buf: vec![0; TUN_MAX_PACKET],
            stats: TunStats::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> TunStats {
        self.stats
    }

    /// The descriptor to wait on: readable when the kernel has sent a packet.
    pub fn poll_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Reads up to `max` packets the kernel sent, handing each (an IPv4 or IPv6 packet) to `each`.
    /// Returns how many were read. Never blocks.
    pub fn recv(&mut self, max: usize, mut each: impl FnMut(&[u8])) -> Result<usize> {
        let mut n = 0;
        while n < max {
            // SAFETY: the buffer is valid for its whole length.
            let rc = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(n),
                    _ => Err(HwError::io(format!("read from {}", self.name), e)),
                };
            }
            if rc == 0 {
                return Ok(n);
            }
            n += 1;
            self.stats.rx_packets += 1;
            each(&self.buf[..rc as usize]);
        }
        Ok(n)
    }

    /// Gives one IP packet to the kernel. False when the kernel refused it (counted).
    pub fn send(&mut self, packet: &[u8]) -> bool {
        // SAFETY: the packet slice is valid for its length.
        let rc = unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if rc == packet.len() as isize {
            self.stats.tx_packets += 1;
            true
        } else {
            self.stats.tx_errors += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{is_root, TestNet};

    #[test]
    fn the_kernel_answers_a_ping_written_into_the_tun() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let mut net = TestNet::new();
        let ns = net.add_ns("tun").unwrap();
        let got = ns.run(|| {
            let mut q = TunQueue::open("sl-tun-t").unwrap();
            // a second queue of the same device
            let mut q2 = TunQueue::open("sl-tun-t").unwrap();
            crate::netns::run_cmd("ip", &["link", "set", "sl-tun-t", "up"]).unwrap();
            crate::netns::run_cmd("ip", &["addr", "add", "10.9.0.1/24", "dev", "sl-tun-t"])
                .unwrap();
            // echo request 10.9.0.2 -> 10.9.0.1, id 7, seq 1
            let mut p = vec![
                0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 10, 9, 0, 2, 10, 9, 0, 1, 8, 0, 0, 0, 0,
                7, 0, 1,
            ];
            let c = crate::tun::tests::csum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            let c = crate::tun::tests::csum(&p[20..]);
            p[22..24].copy_from_slice(&c.to_be_bytes());
            assert!(q.send(&p));
            let mut reply = Vec::new();
            for _ in 0..200 {
                // the kernel picks the queue by flow
                for q in [&mut q, &mut q2] {
                    q.recv(8, |pkt| {
                        if pkt.len() >= 28 && pkt[9] == 1 && pkt[20] == 0 {
                            reply = pkt.to_vec();
                        }
                    })
                    .unwrap();
                }
                if !reply.is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            reply
        });
        assert!(!got.is_empty(), "no echo reply came out of the TUN");
        assert_eq!(&got[12..16], &[10, 9, 0, 1]);
        assert_eq!(&got[16..20], &[10, 9, 0, 2]);
        assert_eq!(&got[24..28], &[0, 7, 0, 1]);
    }

    fn csum(b: &[u8]) -> u16 {
        let mut s = 0u32;
        for c in b.chunks(2) {
            s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn a_name_too_long_is_refused() {
        assert!(TunQueue::open("a-very-long-tun-name").is_err());
    }
}
