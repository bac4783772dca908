//! Interface discovery and the few settings the lab needs, through plain ioctls (no netlink, no ethtool binary).
//!
//! Every call works on the network namespace of the *calling thread* (the ioctls go through a socket opened
//! by that thread), so [`crate::netns`] closures see the interfaces of their namespace.

use crate::{HwError, Result};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// What the kernel says about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// Layer-3 MTU.
    pub mtu: u32,
    /// Number of RX queues (at least 1).
    pub rx_queues: u32,
}

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// A datagram socket used only as an ioctl handle.
fn ctl_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(HwError::last_os("socket(AF_INET) for ioctl"));
    }
    // SAFETY: fd is a fresh, valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq_for(name: &str) -> Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(HwError::NoSuchInterface(name.to_string()));
    }
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn ioctl(
    fd: &OwnedFd,
    name: &str,
    request: libc::c_ulong,
    req: &mut libc::ifreq,
    what: &str,
) -> Result<()> {
    // SAFETY: `req` is a valid ifreq for the duration of the call; the request codes used here read/write
    // only the ifreq (or the buffer its ifru_data points at, which the callers keep alive).
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, req as *mut libc::ifreq) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENODEV) {
            return Err(HwError::NoSuchInterface(name.to_string()));
        }
        return Err(HwError::io(format!("{what} on {name}"), err));
    }
    Ok(())
}

/// Runs an ethtool command whose argument block is `data` (starts with the u32 command).
fn ethtool<T>(name: &str, data: &mut T, what: &str) -> Result<()> {
    let fd = ctl_socket()?;
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_data = data as *mut T as *mut libc::c_char;
    ioctl(&fd, name, libc::SIOCETHTOOL, &mut req, what)
}

/// Looks up `name` in the calling thread's network namespace.
pub fn lookup(name: &str) -> Result<Interface> {
    let fd = ctl_socket()?;
    let mut req = ifreq_for(name)?;
    ioctl(&fd, name, libc::SIOCGIFINDEX, &mut req, "SIOCGIFINDEX")?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
    let ifindex = unsafe { req.ifr_ifru.ifru_ifindex } as u32;

    let mut req = ifreq_for(name)?;
    ioctl(&fd, name, libc::SIOCGIFHWADDR, &mut req, "SIOCGIFHWADDR")?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *d = *s as u8;
    }

    let mut req = ifreq_for(name)?;
    ioctl(&fd, name, libc::SIOCGIFMTU, &mut req, "SIOCGIFMTU")?;
    // SAFETY: SIOCGIFMTU filled the mtu member.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu } as u32;

    let rx_queues = rx_queue_count(name, ifindex);
    Ok(Interface {
        name: name.to_string(),
        ifindex,
        mac,
        mtu,
        rx_queues,
    })
}

/// RX queues of an interface: ETHTOOL_GCHANNELS (rx + combined) first, because it answers in the calling
/// thread's namespace; `/sys/class/net/IF/queues/rx-*` otherwise (sysfs shows the namespace it was mounted in,
/// so it is only trusted when its ifindex matches); 1 when neither answers.
fn rx_queue_count(name: &str, ifindex: u32) -> u32 {
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    if ethtool(name, &mut ch, "ETHTOOL_GCHANNELS").is_ok() {
        let n = ch.rx_count + ch.combined_count;
        if n > 0 {
            return n;
        }
    }
    let sys = format!("/sys/class/net/{name}/");
    let same_iface = std::fs::read_to_string(format!("{sys}ifindex"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .is_some_and(|i| i == ifindex);
    if same_iface {
        if let Ok(dir) = std::fs::read_dir(format!("{sys}queues")) {
            let n = dir
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count();
            if n > 0 {
                return n as u32;
            }
        }
    }
    1
}

/// Turns TX checksum offload of `ifname` on or off (what `ethtool -K IF tx on|off` does), via the legacy
/// ETHTOOL_STXCSUM ioctl. Used on the end hosts of a veth lab: with offload on, veth hands frames over with
/// CHECKSUM_PARTIAL and a forwarder that copies them passes on unfinished TCP/UDP checksums.
pub fn set_tx_checksum_offload(ifname: &str, on: bool) -> Result<()> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: on as u32,
    };
    ethtool(ifname, &mut v, "ETHTOOL_STXCSUM")
}

/// Whether TX checksum offload of `ifname` is on.
pub fn tx_checksum_offload(ifname: &str) -> Result<bool> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GTXCSUM,
        data: 0,
    };
    ethtool(ifname, &mut v, "ETHTOOL_GTXCSUM")?;
    Ok(v.data != 0)
}

/// Every IPv4 address the calling thread's namespace owns, plus the directed broadcast addresses of its
/// subnets and 255.255.255.255: the destinations that belong to the kernel stack, not to the dataplane.
pub fn local_ipv4_addrs() -> Result<Vec<Ipv4Addr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(HwError::last_os("getifaddrs"));
    }
    let mut out = vec![Ipv4Addr::BROADCAST];
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur walks the list getifaddrs returned; addresses are sockaddr_in when the family is AF_INET.
        unsafe {
            let ifa = &*cur;
            let v4 = |sa: *mut libc::sockaddr| {
                (!sa.is_null() && (*sa).sa_family as i32 == libc::AF_INET)
                    .then(|| u32::from_be((*(sa as *const libc::sockaddr_in)).sin_addr.s_addr))
            };
            if let Some(a) = v4(ifa.ifa_addr) {
                let mut add = |x: u32| {
                    let x = Ipv4Addr::from(x);
                    if !x.is_unspecified() && !out.contains(&x) {
                        out.push(x);
                    }
                };
                add(a);
                // The directed broadcast of the subnet, whether or not `brd` was configured (/31, /32 have none).
                if let Some(mask) = v4(ifa.ifa_netmask) {
                    if mask.count_ones() < 31 && ifa.ifa_flags & libc::IFF_LOOPBACK as u32 == 0 {
                        add(a | !mask);
                    }
                }
            }
            cur = ifa.ifa_next;
        }
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Every IPv6 address the calling thread's namespace owns (link-local ones included): with multicast, the
/// IPv6 destinations that belong to the kernel stack.
pub fn local_ipv6_addrs() -> Result<Vec<Ipv6Addr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(HwError::last_os("getifaddrs"));
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur walks the list getifaddrs returned; an address is a sockaddr_in6 when the family is
        // AF_INET6.
        unsafe {
            let ifa = &*cur;
            let sa = ifa.ifa_addr;
            if !sa.is_null() && (*sa).sa_family as i32 == libc::AF_INET6 {
                let a = Ipv6Addr::from((*(sa as *const libc::sockaddr_in6)).sin6_addr.s6_addr);
                if !out.contains(&a) {
                    out.push(a);
                }
            }
            cur = ifa.ifa_next;
        }
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_unknown_is_reported() {
        let lo = lookup("lo").unwrap();
        assert!(lo.ifindex > 0);
        assert!(lo.mtu >= 1500);
        assert!(lo.rx_queues >= 1);
        assert!(matches!(
            lookup("sluice-nope0"),
            Err(HwError::NoSuchInterface(_))
        ));
        assert!(matches!(lookup(""), Err(HwError::NoSuchInterface(_))));
    }

    #[test]
    fn local_addresses_include_loopback() {
        let addrs = local_ipv4_addrs().unwrap();
        assert!(addrs.contains(&Ipv4Addr::LOCALHOST));
        assert!(addrs.contains(&Ipv4Addr::BROADCAST));
    }
}
