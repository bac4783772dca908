//! Reading the namespace's interfaces, addresses and routes from the kernel, so one `ip` configuration
//! serves the kernel and sluice alike. Read through iproute2's JSON output (`ip -j`): stable, and the
//! operator's own tool.

use anyhow::{anyhow, bail, Context, Result};
use dataplane::{InterfaceConfig, Route, Route6};
use serde_json::Value;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;

/// Runs `ip ARGS…` and returns its standard output; a failure names the command and says why.
pub(crate) fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -j ARGS…`, parsed (an empty answer is an empty list).
pub(crate) fn ip_json(args: &[&str]) -> Result<Value> {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let text = ip(&all)?;
    if text.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&text).with_context(|| format!("cannot parse `ip -j {}`", args.join(" ")))
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The named interfaces, in the given order, with their IPv4 addresses. A missing interface is an error
/// naming it.
pub fn interfaces(names: &[String]) -> Result<Vec<InterfaceConfig>> {
    let all = ip_json(&["addr", "show"])?;
    let all = all
        .as_array()
        .ok_or_else(|| anyhow!("unexpected `ip -j addr` output"))?;
    names
        .iter()
        .map(|name| {
            let link = all
                .iter()
                .find(|l| l["ifname"].as_str() == Some(name))
                .ok_or_else(|| anyhow!("interface {name} not found in this network namespace"))?;
            let ipv4 = link["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["family"] == "inet")
                .filter_map(|a| {
                    Some((
                        a["local"].as_str()?.parse().ok()?,
                        a["prefixlen"].as_u64()? as u8,
                    ))
                })
                .collect();
            Ok(InterfaceConfig {
                name: name.clone(),
                ifindex: link["ifindex"].as_u64().unwrap_or(0) as u32,
                mac: link["address"]
                    .as_str()
                    .and_then(parse_mac)
                    .unwrap_or([0; 6]),
                mtu: link["mtu"].as_u64().unwrap_or(1500) as u32,
                ipv4,
            })
        })
        .collect()
}

/// The IPv6 addresses of `ifaces` (global and link-local; tentative ones too, as the kernel's DAD is its
/// own business), as (interface index, address, prefix length).
pub fn ipv6_addresses(ifaces: &[InterfaceConfig]) -> Result<Vec<(usize, Ipv6Addr, u8)>> {
    let all = ip_json(&["-6", "addr", "show"])?;
    let mut out = Vec::new();
    for link in all.as_array().into_iter().flatten() {
        let Some(i) = ifaces
            .iter()
            .position(|x| Some(x.name.as_str()) == link["ifname"].as_str())
        else {
            continue;
        };
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if a["family"] != "inet6" {
                continue;
            }
            let (Some(addr), Some(plen)) = (
                a["local"].as_str().and_then(|s| s.parse().ok()),
                a["prefixlen"].as_u64(),
            ) else {
                continue;
            };
            out.push((i, addr, plen.min(128) as u8));
        }
    }
    Ok(out)
}

/// The main table's IPv6 routes through one of `ifaces` with a gateway or a prefix (connected routes come
/// with the addresses; link-local and multicast routes are not forwarding routes).
pub fn routes6(ifaces: &[InterfaceConfig]) -> Result<Vec<Route6>> {
    let all = ip_json(&["-6", "route", "show", "table", "main"])?;
    let mut routes = Vec::new();
    for r in all.as_array().into_iter().flatten() {
        let Some(iface) = r["dev"]
            .as_str()
            .and_then(|dev| ifaces.iter().position(|i| i.name == dev))
        else {
            continue;
        };
        let (dst, prefix): (Ipv6Addr, u8) = match r["dst"].as_str() {
            Some("default") | None => (Ipv6Addr::UNSPECIFIED, 0),
            Some(s) => match s.split_once('/') {
                Some((a, p)) => (a.parse()?, p.parse()?),
                None => (s.parse()?, 128),
            },
        };
        if dst.is_multicast() || dst.segments()[0] & 0xffc0 == 0xfe80 {
            continue;
        }
        let gateway = r["gateway"].as_str().and_then(|g| g.parse().ok());
        routes.push(Route6 {
            dst,
            prefix,
            gateway,
            iface,
        });
    }
    Ok(routes)
}

/// The namespace's permanent IPv6 neighbours on `ifaces`, as [`permanent_neighbours`] for IPv4.
pub fn permanent_neighbours6(
    ifaces: &[InterfaceConfig],
) -> Result<Vec<(usize, Ipv6Addr, [u8; 6])>> {
    let all = ip_json(&["-6", "neigh", "show", "nud", "permanent"])?;
    Ok(all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let iface = ifaces
                .iter()
                .position(|i| Some(i.name.as_str()) == n["dev"].as_str())?;
            Some((
                iface,
                n["dst"].as_str()?.parse().ok()?,
                parse_mac(n["lladdr"].as_str()?)?,
            ))
        })
        .collect())
}

/// The namespace's permanent IPv4 neighbours (`ip neigh add … nud permanent`) on `ifaces`, as
/// (interface index, address, MAC): sluice uses them as the kernel does, without ARP.
pub fn permanent_neighbours(ifaces: &[InterfaceConfig]) -> Result<Vec<(usize, Ipv4Addr, [u8; 6])>> {
    let all = ip_json(&["-4", "neigh", "show", "nud", "permanent"])?;
    Ok(all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let iface = ifaces
                .iter()
                .position(|i| Some(i.name.as_str()) == n["dev"].as_str())?;
            Some((
                iface,
                n["dst"].as_str()?.parse().ok()?,
                parse_mac(n["lladdr"].as_str()?)?,
            ))
        })
        .collect())
}

/// The kernel's ICMP error limits in this namespace (`net.ipv4.icmp_ratelimit` in ms,
/// `icmp_msgs_per_sec`, `icmp_msgs_burst`), which sluice applies to the errors it sends.
pub fn icmp_rate_limit() -> dataplane::icmp::IcmpRateLimit {
    let text = |name: &str| std::fs::read_to_string(format!("/proc/sys/net/{name}")).ok();
    let read = |name: &str| text(name).and_then(|s| s.trim().parse::<u64>().ok());
    let d = dataplane::icmp::IcmpRateLimit::default();
    dataplane::icmp::IcmpRateLimit {
        per_dest_ns: read("ipv4/icmp_ratelimit").map_or(d.per_dest_ns, |ms| ms * 1_000_000),
        msgs_per_sec: read("ipv4/icmp_msgs_per_sec").unwrap_or(d.msgs_per_sec),
        msgs_burst: read("ipv4/icmp_msgs_burst").unwrap_or(d.msgs_burst),
        per_dest6_ns: read("ipv6/icmp/ratelimit").map_or(d.per_dest6_ns, |ms| ms * 1_000_000),
        ratemask6: text("ipv6/icmp/ratemask")
            .and_then(|t| dataplane::icmp::parse_ratemask(&t))
            .unwrap_or(d.ratemask6),
    }
}

/// `net.ipv4.conf.{all,IF}.send_redirects` for each interface (the kernel sends redirects when either is
/// set).
pub fn send_redirects(ifaces: &[InterfaceConfig]) -> Vec<bool> {
    let on = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/send_redirects"))
            .is_ok_and(|v| v.trim() != "0")
    };
    let all = on("all");
    ifaces.iter().map(|i| all || on(&i.name)).collect()
}

/// Every IPv4 address configured in the namespace (all of them are local to the box, whatever interface
/// a packet arrives on).
pub fn all_local_ipv4() -> Result<Vec<Ipv4Addr>> {
    let all = ip_json(&["-4", "addr", "show"])?;
    Ok(all
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str()?.parse().ok())
        .collect())
}

/// The main table's IPv4 routes that leave through one of `ifaces` (connected routes are derived from the
/// addresses by the FIB itself, so only gatewayed routes matter, but all are returned).
pub fn routes(ifaces: &[InterfaceConfig]) -> Result<Vec<Route>> {
    let all = ip_json(&["-4", "route", "show", "table", "main"])?;
    let mut routes = Vec::new();
    for r in all.as_array().into_iter().flatten() {
        let Some(dev) = r["dev"].as_str() else {
            continue;
        };
        let Some(iface) = ifaces.iter().position(|i| i.name == dev) else {
            continue;
        };
        let (dst, prefix) = match r["dst"].as_str() {
            Some("default") | None => (Ipv4Addr::UNSPECIFIED, 0),
            Some(s) => match s.split_once('/') {
                Some((a, p)) => (a.parse()?, p.parse()?),
                None => (s.parse()?, 32),
            },
        };
        let gateway = r["gateway"].as_str().and_then(|g| g.parse().ok());
        routes.push(Route {
            dst,
            prefix,
            gateway,
            iface,
        });
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Some([2, 0, 10, 255, 0, 1]));
        assert_eq!(parse_mac("02:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:07"), None);
    }
}
