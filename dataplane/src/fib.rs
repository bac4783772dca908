//! The routing decision: the appliance's interfaces and addresses, and a longest-prefix-match FIB.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One interface as the dataplane sees it (the control plane fills this from the kernel or a file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Addresses with their prefix lengths, e.g. 192.0.2.1/24.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
}

/// A route: `dst/prefix` reached through `iface` (an index into the interface list), via `gateway` or
/// directly connected when `gateway` is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub iface: usize,
}

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteDecision {
    /// For one of the appliance's own addresses (or a broadcast address of one of its subnets).
    Local,
    /// Out of interface `iface`, to the neighbour `next_hop`.
    Forward {
        iface: usize,
        next_hop: Ipv4Addr,
    },
    Unreachable,
}

/// Are `a` and `b` in the same /`prefix`?
pub fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    u32::from(a) & mask(prefix) == u32::from(b) & mask(prefix)
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

/// The interfaces and the routing table. Immutable once built; rebuilt by the control plane when the
/// kernel's configuration changes.
#[derive(Clone, Debug, Default)]
pub struct Fib {
    pub interfaces: Vec<InterfaceConfig>,
    /// Sorted by prefix length, longest first, so the first match is the longest.
    routes: Vec<Route>,
    local: Vec<u32>,
    broadcast: Vec<u32>,
    /// IPv6 addresses of each interface (index as `interfaces`), with prefix lengths.
    ipv6: Vec<Vec<(Ipv6Addr, u8)>>,
    /// IPv6 routes, longest prefix first.
    routes6: Vec<Route6>,
}

/// An IPv6 route: `dst/prefix` reached through `iface`, via `gateway` or directly connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route6 {
    pub dst: Ipv6Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv6Addr>,
    pub iface: usize,
}

/// Where an IPv6 packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteDecision6 {
    /// For one of the appliance's own addresses, or multicast (the kernel's business: NDP, MLD …).
    Local,
    Forward {
        iface: usize,
        next_hop: Ipv6Addr,
    },
    /// No route: destination unreachable, no route (`ip6_pkt_discard`).
    Unreachable,
    /// Never forwarded (a link-local or unspecified destination that is not the box's).
    NotForwardable,
}

fn mask6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix.min(128) as u32)
    }
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

impl Fib {
    /// Builds the FIB from interfaces (whose connected subnets become routes) and further routes.
    pub fn new(interfaces: Vec<InterfaceConfig>, extra_routes: &[Route]) -> Fib {
        let mut routes = Vec::new();
        let mut local = Vec::new();
        let mut broadcast = Vec::new();
        for (i, ifc) in interfaces.iter().enumerate() {
            for &(addr, prefix) in &ifc.ipv4 {
                let a = u32::from(addr);
                local.push(a);
                if prefix < 31 {
                    broadcast.push(a | !mask(prefix));
                }
                routes.push(Route {
                    dst: Ipv4Addr::from(a & mask(prefix)),
                    prefix,
                    gateway: None,
                    iface: i,
                });
            }
        }
        for r in extra_routes {
            if r.iface < interfaces.len() && !routes.contains(r) {
                routes.push(*r);
            }
        }
        routes.sort_by(|a, b| b.prefix.cmp(&a.prefix));
        let n = interfaces.len();
        Fib {
            interfaces,
            routes,
            local,
            broadcast,
            ipv6: vec![Vec::new(); n],
            routes6: Vec::new(),
        }
    }

    /// Adds an IPv6 address to interface `iface`; a global one brings its connected route with it
    /// (link-local addresses route nothing: link-local destinations are never forwarded).
    pub fn add_ipv6(&mut self, iface: usize, addr: Ipv6Addr, prefix: u8) {
        let Some(list) = self.ipv6.get_mut(iface) else {
            return;
        };
        if list.contains(&(addr, prefix)) {
            return;
        }
        list.push((addr, prefix));
        if !is_link_local(addr) {
            self.add_route6(Route6 {
                dst: Ipv6Addr::from(addr.to_bits() & mask6(prefix)),
                prefix,
                gateway: None,
                iface,
            });
        }
    }

    /// Adds an IPv6 route (ignored when its interface is unknown or it is there already).
    pub fn add_route6(&mut self, r: Route6) {
        if r.iface >= self.interfaces.len() || self.routes6.contains(&r) {
            return;
        }
        let r = Route6 {
            dst: Ipv6Addr::from(r.dst.to_bits() & mask6(r.prefix)),
            ..r
        };
        let at = self.routes6.partition_point(|x| x.prefix >= r.prefix);
        self.routes6.insert(at, r);
    }

    pub fn routes6(&self) -> &[Route6] {
        &self.routes6
    }

    /// The IPv6 addresses of interface `iface`.
    pub fn ipv6_addrs(&self, iface: usize) -> &[(Ipv6Addr, u8)] {
        self.ipv6.get(iface).map_or(&[], |v| v.as_slice())
    }

    /// One of the box's own IPv6 addresses (on any interface)?
    pub fn is_own6(&self, addr: Ipv6Addr) -> bool {
        self.ipv6.iter().flatten().any(|(a, _)| *a == addr)
    }

    /// The appliance's address on `iface` to talk to `peer` from: one in the same prefix, else a global
    /// one, else (for link-local peers, or nothing else) the link-local one.
    pub fn source6_for(&self, iface: usize, peer: Ipv6Addr) -> Option<Ipv6Addr> {
        let addrs = self.ipv6.get(iface)?;
        let p = peer.to_bits();
        addrs
            .iter()
            .find(|(a, l)| a.to_bits() & mask6(*l) == p & mask6(*l))
            .or_else(|| {
                addrs
                    .iter()
                    .find(|(a, _)| is_link_local(*a) == is_link_local(peer))
            })
            .or(addrs.first())
            .map(|(a, _)| *a)
    }

    /// Longest-prefix match for an IPv6 destination (`ip6_route_input`).
    pub fn lookup6(&self, dst: Ipv6Addr) -> RouteDecision6 {
        if dst.is_multicast() || self.is_own6(dst) {
            return RouteDecision6::Local;
        }
        if is_link_local(dst) || dst.is_unspecified() {
            return RouteDecision6::NotForwardable;
        }
        match self.route6(dst) {
            Some(r) => RouteDecision6::Forward {
                iface: r.iface,
                next_hop: r.gateway.unwrap_or(dst),
            },
            None => RouteDecision6::Unreachable,
        }
    }

    /// The IPv6 route with the longest prefix covering `dst`, if any.
    pub fn route6(&self, dst: Ipv6Addr) -> Option<&Route6> {
        let d = dst.to_bits();
        self.routes6
            .iter()
            .find(|r| d & mask6(r.prefix) == r.dst.to_bits())
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn is_local(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        self.local.contains(&a) || self.broadcast.contains(&a) || a == u32::MAX
    }

    /// The appliance's address on `iface` that is in the same subnet as `peer`, else its first address there.
    pub fn source_for(&self, iface: usize, peer: Ipv4Addr) -> Option<Ipv4Addr> {
        let addrs = &self.interfaces.get(iface)?.ipv4;
        addrs
            .iter()
            .find(|(a, p)| u32::from(*a) & mask(*p) == u32::from(peer) & mask(*p))
            .or(addrs.first())
            .map(|(a, _)| *a)
    }

    pub fn lookup(&self, dst: Ipv4Addr) -> RouteDecision {
        if self.is_local(dst) {
            return RouteDecision::Local;
        }
        let d = u32::from(dst);
        for r in &self.routes {
            if d & mask(r.prefix) == u32::from(r.dst) {
                return RouteDecision::Forward {
                    iface: r.iface,
                    next_hop: r.gateway.unwrap_or(dst),
                };
            }
        }
        RouteDecision::Unreachable
    }
}

/// The routing answers `fib` expressions need (`fib saddr . iif oif missing drop`, `fib daddr type
/// local`), from the same table the forwarding uses (no policy routing: `mark` in the flags changes
/// nothing).
impl rules::eval::FibLookup for Fib {
    fn route(&self, dst: &[u8]) -> Option<(u32, &str)> {
        let iface = match *dst {
            [a, b, c, d] => match self.lookup(Ipv4Addr::new(a, b, c, d)) {
                RouteDecision::Forward { iface, .. } => iface,
                _ => return None,
            },
            _ => {
                let a: [u8; 16] = dst.try_into().ok()?;
                match self.lookup6(Ipv6Addr::from(a)) {
                    RouteDecision6::Forward { iface, .. } => iface,
                    _ => return None,
                }
            }
        };
        let i = self.interfaces.get(iface)?;
        Some((i.ifindex, i.name.as_str()))
    }

    fn addr_type(&self, addr: &[u8], _ifindex: Option<u32>) -> u32 {
        const UNICAST: u32 = 1;
        const LOCAL: u32 = 2;
        const BROADCAST: u32 = 3;
        const MULTICAST: u32 = 5;
        const UNREACHABLE: u32 = 7;
        match *addr {
            [a, b, c, d] => {
                let ip = Ipv4Addr::new(a, b, c, d);
                let v = u32::from(ip);
                // __inet_dev_addr_type: the local table decides; the rest is unicast
                if v == 0 || v == u32::MAX || self.broadcast.contains(&v) {
                    BROADCAST
                } else if ip.is_multicast() {
                    MULTICAST
                } else if self.local.contains(&v) {
                    LOCAL
                } else {
                    UNICAST
                }
            }
            _ => {
                let Ok(a) = <[u8; 16]>::try_from(addr) else {
                    return 0;
                };
                let ip = Ipv6Addr::from(a);
                if self.is_own6(ip) {
                    LOCAL
                } else if ip.is_multicast() {
                    MULTICAST
                } else if self.route6(ip).is_some() {
                    UNICAST
                } else {
                    UNREACHABLE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifc(name: &str, addr: [u8; 4], prefix: u8) -> InterfaceConfig {
        InterfaceConfig {
            name: name.into(),
            ifindex: 1,
            mac: [2; 6],
            mtu: 1500,
            ipv4: vec![(addr.into(), prefix)],
        }
    }

    #[test]
    fn longest_prefix_wins_and_local_is_local() {
        let fib = Fib::new(
            vec![
                ifc("a", [192, 0, 2, 1], 24),
                ifc("b", [198, 51, 100, 1], 24),
            ],
            &[
                Route {
                    dst: [0, 0, 0, 0].into(),
                    prefix: 0,
                    gateway: Some([198, 51, 100, 254].into()),
                    iface: 1,
                },
                Route {
                    dst: [203, 0, 113, 0].into(),
                    prefix: 25,
                    gateway: Some([192, 0, 2, 9].into()),
                    iface: 0,
                },
            ],
        );
        assert_eq!(fib.lookup([192, 0, 2, 1].into()), RouteDecision::Local);
        assert_eq!(fib.lookup([192, 0, 2, 255].into()), RouteDecision::Local);
        assert_eq!(
            fib.lookup([192, 0, 2, 7].into()),
            RouteDecision::Forward {
                iface: 0,
                next_hop: [192, 0, 2, 7].into()
            }
        );
        assert_eq!(
            fib.lookup([203, 0, 113, 5].into()),
            RouteDecision::Forward {
                iface: 0,
                next_hop: [192, 0, 2, 9].into()
            }
        );
        assert_eq!(
            fib.lookup([203, 0, 113, 200].into()),
            RouteDecision::Forward {
                iface: 1,
                next_hop: [198, 51, 100, 254].into()
            }
        );
        assert_eq!(
            fib.source_for(1, [198, 51, 100, 77].into()),
            Some([198, 51, 100, 1].into())
        );
    }

    #[test]
    fn ipv6_longest_prefix_and_sources() {
        let mut fib = Fib::new(
            vec![
                ifc("a", [192, 0, 2, 1], 24),
                ifc("b", [198, 51, 100, 1], 24),
            ],
            &[],
        );
        let a1: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        fib.add_ipv6(0, a1, 64);
        fib.add_ipv6(0, ll, 64);
        fib.add_ipv6(1, "2001:db8:2::1".parse().unwrap(), 64);
        let gw: Ipv6Addr = "2001:db8:2::fe".parse().unwrap();
        fib.add_route6(Route6 {
            dst: "::".parse().unwrap(),
            prefix: 0,
            gateway: Some(gw),
            iface: 1,
        });
        fib.add_route6(Route6 {
            dst: "2001:db8:3::".parse().unwrap(),
            prefix: 48,
            gateway: Some("2001:db8:1::9".parse().unwrap()),
            iface: 0,
        });
        assert_eq!(fib.lookup6(a1), RouteDecision6::Local);
        assert_eq!(
            fib.lookup6("ff02::1".parse().unwrap()),
            RouteDecision6::Local
        );
        assert_eq!(
            fib.lookup6("fe80::7".parse().unwrap()),
            RouteDecision6::NotForwardable
        );
        let d: Ipv6Addr = "2001:db8:1::7".parse().unwrap();
        assert_eq!(
            fib.lookup6(d),
            RouteDecision6::Forward {
                iface: 0,
                next_hop: d
            }
        );
        assert_eq!(
            fib.lookup6("2001:db8:3:1::5".parse().unwrap()),
            RouteDecision6::Forward {
                iface: 0,
                next_hop: "2001:db8:1::9".parse().unwrap()
            }
        );
        assert_eq!(
            fib.lookup6("2001:db8:4::5".parse().unwrap()),
            RouteDecision6::Forward {
                iface: 1,
                next_hop: gw
            }
        );
        assert_eq!(fib.source6_for(0, d), Some(a1));
        assert_eq!(fib.source6_for(0, "fe80::9".parse().unwrap()), Some(ll));
        let plain = Fib::new(vec![ifc("a", [192, 0, 2, 1], 24)], &[]);
        assert_eq!(
            plain.lookup6("2001:db8::1".parse().unwrap()),
            RouteDecision6::Unreachable
        );
    }

    #[test]
    fn no_default_route_means_unreachable() {
        let fib = Fib::new(vec![ifc("a", [192, 0, 2, 1], 24)], &[]);
        assert_eq!(fib.lookup([8, 8, 8, 8].into()), RouteDecision::Unreachable);
    }
}
