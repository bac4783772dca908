//! The exception path's kernel side (`sluice run --host-tun NAME`): a TUN device between the dataplane and
//! the kernel stack, and the routing that makes the kernel send its own traffic into it.
//!
//! The interfaces keep their addresses (the kernel still answers ARP and neighbour solicitations on them,
//! and every tool shows the addresses where the operator put them). What changes:
//! - the XDP program no longer passes frames for the box's addresses to the kernel: the dataplane takes
//!   them, runs PREROUTING and INPUT, and writes what INPUT accepts into the TUN;
//! - the kernel's own output is routed into the TUN by a policy rule for locally generated packets
//!   (`ip rule add iif lo lookup TABLE`, before the main table) and a table that mirrors the main table's
//!   routes through sluice's interfaces, with the source address the kernel would have picked there. The
//!   dataplane reads those packets, runs OUTPUT, routes them with its own FIB, runs POSTROUTING and sends
//!   them. Traffic between the box's own addresses stays on `lo` (the local table comes first).
//!
//! Routes through other interfaces become `throw` routes in that table, so that a more specific route
//! through an interface sluice does not run on keeps winning over a default route through sluice. A route
//! added while this runs must name its device (`ip route add … via GW dev IF`): without it the kernel
//! looks the gateway up as the box's own output, finds the TUN, and installs the route there.
//!
//! Reverse-path filtering is turned off on the TUN (packets arrive there from every network). The rules
//! and the table are removed on exit; the TUN goes when its last queue closes. A crash leaves a rule
//! pointing at an empty table, which changes nothing and is replaced at the next start.

use crate::kernel::{ip, ip_json};
use anyhow::{Context, Result};
use dataplane::InterfaceConfig;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The routing table (and rule preference) the kernel's output is routed through.
pub const HOST_TABLE: u32 = 20942;

fn write_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("cannot write {path}"))
}

/// The kernel side of the exception path; dropping it removes the routing it added.
pub struct HostPath {
    tun: String,
}

/// A route to mirror into [`HOST_TABLE`]: destination and the source address to prefer.
#[derive(Debug, PartialEq, Eq)]
pub struct MirroredRoute {
    pub dst: String,
    /// The source address to prefer; `None` for a route through an interface sluice does not run on,
    /// which becomes a `throw` route (the lookup goes on in the main table, as if the rule were not there).
    pub src: Option<String>,
    pub v6: bool,
}

impl HostPath {
    /// Opens `queues` queues of the TUN `name` (one per worker) and routes the kernel's output into it.
    pub fn setup(
        name: &str,
        ifaces: &[InterfaceConfig],
        queues: usize,
    ) -> Result<(HostPath, Vec<hw::tun::TunQueue>)> {
        let mut qs = Vec::new();
        for _ in 0..queues.max(1) {
            qs.push(
                hw::tun::TunQueue::open(name)
                    .with_context(|| format!("cannot open the host TUN {name}"))?,
            );
        }
        let host = HostPath {
            tun: name.to_string(),
        };
        host.remove_rules();
        let mtu = ifaces.iter().map(|i| i.mtu).min().unwrap_or(1500).max(1280);
        // no link-local address, no router solicitations: nothing of the kernel's own on the TUN
        if let Err(e) = ip(&["link", "set", name, "addrgenmode", "none"]) {
            tracing::warn!("{e}");
        }
        ip(&["link", "set", name, "mtu", &mtu.to_string(), "up"])?;
        write_sysctl(&format!("/proc/sys/net/ipv4/conf/{name}/rp_filter"), "0")?;
        // the strictest of `all` and the device's applies: strict everywhere would drop what comes in here
        if std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter")
            .is_ok_and(|v| v.trim() == "1")
        {
            tracing::warn!(
                "net.ipv4.conf.all.rp_filter was 1 (strict): set to 2 (loose) for the host TUN"
            );
            write_sysctl("/proc/sys/net/ipv4/conf/all/rp_filter", "2")?;
        }
        let table = HOST_TABLE.to_string();
        mirror_routes(name, ifaces)?;
        ip(&[
            "-4", "rule", "add", "pref", &table, "iif", "lo", "lookup", &table,
        ])?;
        // a kernel without IPv6 (ipv6.disable=1) has no IPv6 rules: the box then has no IPv6 of its own
        if let Err(e) = ip(&[
            "-6", "rule", "add", "pref", &table, "iif", "lo", "lookup", &table,
        ]) {
            tracing::warn!("no IPv6 on the exception path: {e}");
        }
        Ok((host, qs))
    }

    fn remove_rules(&self) {
        let table = HOST_TABLE.to_string();
        for fam in ["-4", "-6"] {
            // every copy a crash may have left
            while ip(&[fam, "rule", "del", "pref", &table]).is_ok() {}
            let _ = ip(&[fam, "route", "flush", "table", &table]);
        }
    }

    pub fn tun(&self) -> &str {
        &self.tun
    }
}

impl Drop for HostPath {
    fn drop(&mut self) {
        self.remove_rules();
    }
}

/// Writes [`HOST_TABLE`] anew from the main table's routes through `ifaces`, all through the TUN `name`
/// (at the start, and again when the daemon re-reads the namespace).
pub fn mirror_routes(name: &str, ifaces: &[InterfaceConfig]) -> Result<()> {
    let table = HOST_TABLE.to_string();
    let routes = mirrored_routes(ifaces, Some(name))?;
    for fam in ["-4", "-6"] {
        let _ = ip(&[fam, "route", "flush", "table", &table]);
    }
    for r in routes {
        let fam = if r.v6 { "-6" } else { "-4" };
        match &r.src {
            Some(src) => ip(&[
                fam, "route", "replace", &r.dst, "dev", name, "src", src, "table", &table,
            ])?,
            None => ip(&[fam, "route", "replace", "throw", &r.dst, "table", &table])?,
        };
    }
    Ok(())
}

/// The main table's routes through `ifaces`, each with the source address the kernel would pick for it
/// (its `prefsrc`, else the first address of its interface); IPv6 link-local and multicast routes are
/// left out (the TUN has no link).
pub fn mirrored_routes(
    ifaces: &[InterfaceConfig],
    tun: Option<&str>,
) -> Result<Vec<MirroredRoute>> {
    let addrs = ip_json(&["addr", "show"])?;
    let first_addr = |dev: &str, v6: bool| -> Option<String> {
        addrs
            .as_array()?
            .iter()
            .find(|l| l["ifname"] == dev)?
            .get("addr_info")?
            .as_array()?
            .iter()
            .filter(|a| a["family"] == if v6 { "inet6" } else { "inet" })
            .filter(|a| a["scope"] == "global")
            .find_map(|a| a["local"].as_str().map(str::to_string))
    };
    let mut out = Vec::new();
    for v6 in [false, true] {
        let fam = if v6 { "-6" } else { "-4" };
        let routes = match ip_json(&[fam, "route", "show", "table", "main"]) {
            Ok(r) => r,
            // no IPv6 in this kernel
            Err(_) if v6 => continue,
            Err(e) => return Err(e),
        };
        for r in routes.as_array().into_iter().flatten() {
            let dst = r["dst"].as_str().unwrap_or("default").to_string();
            let Some(dev) = r["dev"].as_str() else {
                continue;
            };
            if tun == Some(dev) {
                // a route added since the start without its device: the kernel resolved its gateway
                // through the TUN (see the module comment)
                continue;
            }
            if !ifaces.iter().any(|i| i.name == dev) {
                // not sluice's: a more specific route there must not lose to a route through sluice
                out.push(MirroredRoute { dst, src: None, v6 });
                continue;
            }
            if v6 && (dst.starts_with("fe80:") || dst.starts_with("ff")) {
                continue;
            }
            let src = match r["prefsrc"].as_str() {
                Some(s) => Some(s.to_string()),
                None => first_addr(dev, v6),
            };
            let Some(src) = src else {
                continue;
            };
            // only addresses the box owns
            let ok = if v6 {
                src.parse::<Ipv6Addr>().is_ok()
            } else {
                src.parse::<Ipv4Addr>().is_ok()
            };
            if ok {
                out.push(MirroredRoute {
                    dst,
                    src: Some(src),
                    v6,
                });
            }
        }
    }
    Ok(out)
}
