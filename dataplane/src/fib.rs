//! The routing decision: the appliance's interfaces and addresses, and a longest-prefix-match FIB.

use std::net::Ipv4Addr;

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
        Fib {
            interfaces,
            routes,
            local,
            broadcast,
        }
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
    fn no_default_route_means_unreachable() {
        let fib = Fib::new(vec![ifc("a", [192, 0, 2, 1], 24)], &[]);
        assert_eq!(fib.lookup([8, 8, 8, 8].into()), RouteDecision::Unreachable);
    }
}
