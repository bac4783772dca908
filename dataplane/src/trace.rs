//! Packet tracing: what the hooks did to a packet, recorded as the chain walker reports it.
//!
//! Two consumers: `meta nftrace set 1` on the live daemon (`sluice nft monitor trace`), which records only
//! traced packets and only the events the kernel reports, and `sluice replay`, which records every event
//! of every packet. Recording is off the fast path: with no consumer and no `nftrace` statement in the
//! ruleset, the hooks run with [`rules::eval::NoTrace`].

use rules::eval::{TraceEvent, Tracer};
use rules::{Hook, NfProto, PacketCtx};
use std::net::IpAddr;

/// Most records kept between two drains; beyond it records are counted as lost.
pub const MAX_RECORDS: usize = 65_536;

/// One hook-level event of one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRecord {
    /// Per packet (the kernel's `trace id`).
    pub id: u32,
    pub hook: Hook,
    pub nfproto: NfProto,
    pub event: Event,
    /// The packet's `meta nftrace` at the time of the event.
    pub nftrace: bool,
    pub mark: u32,
    pub iif: String,
    pub oif: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The first traced event of a base chain is preceded by the packet as it was then: the link-layer
    /// header (empty on output) and up to 128 bytes from the network header.
    Packet {
        chain: rules::ChainId,
        ll: Box<[u8]>,
        network: Box<[u8]>,
    },
    Chain(TraceEvent),
    /// Conntrack ran (at priority -200) and gave the packet this `ct state`.
    Conntrack {
        state: u32,
    },
}

/// What a `dup` or `fwd` statement sent: the frame as it was then, and where it goes.
#[derive(Clone, Debug)]
pub struct DupRequest {
    pub fwd: bool,
    pub addr: Option<IpAddr>,
    pub device: Option<String>,
    pub hook: rules::Hook,
    pub frame: Vec<u8>,
}

/// The pipeline's trace state.
#[derive(Debug, Default)]
pub struct Trace {
    /// Record every event of every packet (replay).
    pub all: bool,
    /// The live ruleset can set `meta nftrace` (refreshed on generation switch).
    pub ruleset_traces: bool,
    /// The live ruleset has `log` statements: their lines are collected in `logs`.
    pub ruleset_logs: bool,
    /// `log` lines (syslog severity, text) since the last drain; beyond [`MAX_RECORDS`] they are
    /// counted in `logs_lost`.
    pub logs: Vec<(u8, String)>,
    pub logs_lost: u64,
    /// The live ruleset has `dup`/`fwd` statements: what they send is collected in `dups`.
    pub ruleset_dups: bool,
    /// Packets `dup` and `fwd` statements sent, for the pipeline to send on (beyond [`MAX_RECORDS`]
    /// counted in `dups_lost`).
    pub dups: Vec<DupRequest>,
    pub dups_lost: u64,
    pub records: Vec<TraceRecord>,
    pub lost: u64,
    /// The current packet's id.
    pub id: u32,
    next: u32,
}

impl Trace {
    /// Whether hooks must run with a recording tracer.
    #[inline]
    pub fn active(&self) -> bool {
        self.all || self.ruleset_traces || self.ruleset_logs || self.ruleset_dups
    }

    /// Starts a new packet: gives it a fresh trace id.
    #[inline]
    pub fn begin_packet(&mut self) {
        if self.active() {
            self.next = self.next.wrapping_add(1);
            // spread the ids like the kernel's (a hash), while keeping them unique
            self.id = self.next.wrapping_mul(0x9e37_79b1);
        }
    }

    pub fn push(&mut self, r: TraceRecord) {
        if self.records.len() < MAX_RECORDS {
            self.records.push(r);
        } else {
            self.lost += 1;
        }
    }

    /// A recorder for one base-chain evaluation.
    pub fn recorder<'a>(&'a mut self, hook: Hook, iif: &'a str, oif: &'a str) -> Recorder<'a> {
        Recorder {
            trace: self,
            hook,
            iif,
            oif,
            first: true,
            chain: None,
        }
    }

    /// Records a non-chain event if the packet is being recorded.
    pub fn note(&mut self, pkt: &PacketCtx<'_>, event: Event) {
        if self.all || pkt.nftrace {
            let r = TraceRecord {
                id: self.id,
                hook: pkt.hook,
                nfproto: pkt.nfproto,
                event,
                nftrace: pkt.nftrace,
                mark: pkt.mark,
                iif: pkt.iifname.to_string(),
                oif: pkt.oifname.to_string(),
            };
            self.push(r);
        }
    }
}

pub struct Recorder<'a> {
    trace: &'a mut Trace,
    hook: Hook,
    iif: &'a str,
    oif: &'a str,
    first: bool,
    chain: Option<rules::ChainId>,
}

impl Recorder<'_> {
    /// Sets the base chain about to run.
    pub fn base(&mut self, chain: rules::ChainId) {
        self.chain = Some(chain);
        self.first = true;
    }
}

impl Tracer for Recorder<'_> {
    /// Only a full recording (`replay`) keeps `NoMatch` events; otherwise the compiled classifier may
    /// skip the rules that cannot match (the events kept are the same).
    fn every_rule(&self) -> bool {
        self.trace.all
    }

    fn log(&mut self, pkt: &PacketCtx<'_>, log: &rules::stmt::log::Log) {
        if self.trace.logs.len() < MAX_RECORDS {
            let line = crate::nflog::line(log, pkt);
            self.trace.logs.push((crate::nflog::severity(log), line));
        } else {
            self.trace.logs_lost += 1;
        }
    }

    fn dup(&mut self, pkt: &PacketCtx<'_>, to: &rules::eval::Duplicate<'_>) {
        if self.trace.dups.len() >= MAX_RECORDS {
            self.trace.dups_lost += 1;
            return;
        }
        let end = (pkt.nh_off + pkt.len as usize).min(pkt.frame.len());
        self.trace.dups.push(DupRequest {
            fwd: to.fwd,
            addr: to.addr.and_then(|a| match a.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(a).ok()?)),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(a).ok()?)),
                _ => None,
            }),
            device: to.device.map(str::to_string),
            hook: self.hook,
            frame: pkt.frame[..end].to_vec(),
        });
    }

    fn event(&mut self, pkt: &PacketCtx<'_>, ev: TraceEvent) {
        let wanted = self.trace.all || (pkt.nftrace && !matches!(ev, TraceEvent::NoMatch { .. }));
        if !wanted {
            return;
        }
        let (id, hook, iif, oif) = (self.trace.id, self.hook, self.iif, self.oif);
        let mk = |event| TraceRecord {
            id,
            hook,
            nfproto: pkt.nfproto,
            event,
            nftrace: pkt.nftrace,
            mark: pkt.mark,
            iif: iif.to_string(),
            oif: oif.to_string(),
        };
        if self.first {
            self.first = false;
            let ll = if matches!(self.hook, Hook::Output) {
                Box::default()
            } else {
                pkt.frame[..pkt.nh_off.min(pkt.frame.len())].into()
            };
            let end = (pkt.nh_off + 128).min(pkt.frame.len());
            let network = pkt.frame[pkt.nh_off.min(end)..end].into();
            let r = mk(Event::Packet {
                chain: self.chain.unwrap_or(rules::ChainId(0)),
                ll,
                network,
            });
            self.trace.push(r);
        }
        let r = mk(Event::Chain(ev));
        self.trace.push(r);
    }
}

/// Formats records the way `nft monitor trace` prints the kernel's trace events: a `packet:` line before
/// the first event of each base chain, `rule … (verdict …)` for rules that matched, `verdict …` when a
/// chain ends, `policy …` when the base chain's policy decides. Only traced packets' events (`nftrace`)
/// and no `NoMatch` events are printed, as the kernel reports none of them.
pub fn format_nft_monitor(rs: &rules::CompiledRuleset, records: &[TraceRecord]) -> Vec<String> {
    use rules::eval::TraceVerdict;
    let mut out = Vec::new();
    for r in records {
        if !r.nftrace {
            continue;
        }
        let hdr = |chain: rules::ChainId| {
            let (f, t, c) = rs.chain_name(chain);
            format!("trace id {:08x} {f} {t} {c} ", r.id)
        };
        let mark = if r.mark != 0 {
            format!(" meta mark 0x{:08x}", r.mark)
        } else {
            String::new()
        };
        let verdict = |v: TraceVerdict| match v {
            TraceVerdict::Accept => "accept".to_string(),
            TraceVerdict::Drop | TraceVerdict::Reject(_) => "drop".to_string(),
            TraceVerdict::Stolen => "stolen".to_string(),
            TraceVerdict::Continue => "continue".to_string(),
            TraceVerdict::Return => "return".to_string(),
            TraceVerdict::Jump(c) => format!("jump {}", rs.chain_name(c).2),
            TraceVerdict::Goto(c) => format!("goto {}", rs.chain_name(c).2),
        };
        match &r.event {
            Event::Packet { chain, ll, network } => {
                let mut line = hdr(*chain) + "packet: ";
                if !r.iif.is_empty() {
                    line.push_str(&format!("iif \"{}\" ", r.iif));
                }
                if !r.oif.is_empty() {
                    line.push_str(&format!("oif \"{}\" ", r.oif));
                }
                if ll.len() >= 14 {
                    line.push_str(&format!(
                        "ether saddr {} ether daddr {} ",
                        mac(&ll[6..12]),
                        mac(&ll[0..6])
                    ));
                }
                line.push_str(&describe_network(r.nfproto, network));
                out.push(line.trim_end().to_string());
            }
            Event::Chain(TraceEvent::Rule {
                chain,
                rule,
                verdict: v,
            }) => {
                let ast = &rs.chain_ast(*chain).rules[*rule as usize];
                let text = rules::print_rule(
                    ast,
                    &rules::PrintOptions {
                        stateless: true,
                        ..Default::default()
                    },
                );
                out.push(format!(
                    "{}rule {text} (verdict {}){mark}",
                    hdr(*chain),
                    verdict(*v)
                ));
            }
            Event::Chain(TraceEvent::Return { chain }) => {
                out.push(format!("{}verdict continue{mark}", hdr(*chain)));
            }
            Event::Chain(TraceEvent::Policy { chain, verdict: v }) => {
                let p = match v {
                    rules::Verdict::Accept => "accept",
                    _ => "drop",
                };
                out.push(format!("{}policy {p}{mark}", hdr(*chain)));
            }
            Event::Chain(TraceEvent::NoMatch { .. }) | Event::Conntrack { .. } => {}
        }
    }
    out
}

fn mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The network and transport headers as nft's trace prints them (IPv4; other protocols in brief).
fn describe_network(proto: NfProto, n: &[u8]) -> String {
    if proto != NfProto::Ipv4 || n.len() < 20 {
        return String::new();
    }
    let ihl = (n[0] & 15) as usize * 4;
    let dscp = n[1] >> 2;
    let dscp_name = match dscp {
        0 => "cs0".to_string(),
        8 => "cs1".into(),
        16 => "cs2".into(),
        24 => "cs3".into(),
        32 => "cs4".into(),
        40 => "cs5".into(),
        46 => "ef".into(),
        48 => "cs6".into(),
        56 => "cs7".into(),
        d => format!("0x{d:02x}"),
    };
    let ecn = ["not-ect", "ect1", "ect0", "ce"][(n[1] & 3) as usize];
    let mut s = format!(
        "ip saddr {}.{}.{}.{} ip daddr {}.{}.{}.{} ip dscp {dscp_name} ip ecn {ecn} ip ttl {} ip id {} ip length {} ",
        n[12],
        n[13],
        n[14],
        n[15],
        n[16],
        n[17],
        n[18],
        n[19],
        n[8],
        u16::from_be_bytes([n[4], n[5]]),
        u16::from_be_bytes([n[2], n[3]]),
    );
    let l4 = n.get(ihl..).unwrap_or(&[]);
    let be16 = |o: usize| u16::from_be_bytes([l4[o], l4[o + 1]]);
    let be32 = |o: usize| u32::from_be_bytes([l4[o], l4[o + 1], l4[o + 2], l4[o + 3]]);
    match n[9] {
        6 if l4.len() >= 20 => {
            let names = [
                (0x01, "fin"),
                (0x02, "syn"),
                (0x04, "rst"),
                (0x08, "psh"),
                (0x10, "ack"),
                (0x20, "urg"),
                (0x40, "ecn"),
                (0x80, "cwr"),
            ];
            let flags: Vec<&str> = names
                .iter()
                .filter(|(b, _)| l4[13] & b != 0)
                .map(|(_, n)| *n)
                .collect();
            s.push_str(&format!(
                "tcp sport {} tcp dport {} tcp sequence {} tcp ackseq {} tcp flags == {} tcp window {}",
                be16(0),
                be16(2),
                be32(4),
                be32(8),
                if flags.len() == 1 {
                    flags[0].to_string()
                } else {
                    format!("({})", flags.join(" | "))
                },
                be16(14)
            ));
        }
        17 if l4.len() >= 8 => s.push_str(&format!(
            "udp sport {} udp dport {} udp length {}",
            be16(0),
            be16(2),
            be16(4)
        )),
        1 if l4.len() >= 8 => {
            let ty = match l4[0] {
                0 => "echo-reply".to_string(),
                3 => "destination-unreachable".into(),
                8 => "echo-request".into(),
                11 => "time-exceeded".into(),
                t => t.to_string(),
            };
            s.push_str(&format!("icmp type {ty} icmp code {}", l4[1]));
            if matches!(l4[0], 0 | 8) {
                s.push_str(&format!(" icmp id {} icmp sequence {}", be16(4), be16(6)));
            }
        }
        p => s.push_str(&format!("ip protocol {p}")),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_format_prints_packet_rule_and_policy_lines() {
        let rs = rules::compile(
            &rules::parse_ruleset(
                "table ip filter { chain forward { type filter hook forward priority 0; policy drop; tcp dport 80 meta nftrace set 1; } }",
                "t",
            )
            .unwrap(),
        )
        .unwrap();
        let chain = rs.hook_chains(NfProto::Ipv4, Hook::Forward)[0];
        let mut frame = crate::testkit::with_macs(
            crate::testkit::FW_IN,
            crate::testkit::CLI_MAC,
            crate::testkit::ipv4_frame(
                crate::testkit::CLI,
                crate::testkit::SRV,
                6,
                &crate::testkit::tcp_header(40000, 80, 2),
                64,
            ),
        );
        let mut pkt = PacketCtx {
            frame: &mut frame,
            nh_off: 14,
            th_off: Some(34),
            nfproto: NfProto::Ipv4,
            l4proto: 6,
            len: 40,
            iif: 2,
            iifname: "fw-cli",
            oif: 3,
            oifname: "fw-srv",
            mark: 0,
            ct_state: 8,
            ct_mark: 0,
            ct_label: 0,
            ct_view: None,
            conncount: None,
            ct_counted: 0,
            hook: Hook::Forward,
            nftrace: false,
            now: 0,
            fib: None,
            payload_writes: 0,
        };
        let mut t = Trace {
            ruleset_traces: true,
            ..Default::default()
        };
        t.begin_packet();
        {
            let mut rec = t.recorder(Hook::Forward, "fw-cli", "fw-srv");
            rec.base(chain);
            rs.eval_chain_traced(chain, &mut pkt, &mut [], &mut rec);
        }
        let lines = format_nft_monitor(&rs, &t.records);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        let id = format!("trace id {:08x} ip filter forward ", t.id);
        assert!(lines[0].starts_with(&format!("{id}packet: iif \"fw-cli\" oif \"fw-srv\" ether saddr 02:00:00:00:01:02 ether daddr 02:00:00:00:01:01 ip saddr 192.0.2.2 ip daddr 198.51.100.2 ip dscp cs0 ip ecn not-ect ip ttl 64")), "{}", lines[0]);
        assert!(lines[0].ends_with("tcp sport 40000 tcp dport 80 tcp sequence 0 tcp ackseq 0 tcp flags == syn tcp window 0"), "{}", lines[0]);
        assert_eq!(
            lines[1],
            format!("{id}rule tcp dport 80 meta nftrace set 1 (verdict continue)")
        );
        assert_eq!(lines[2], format!("{id}verdict continue"));
        assert_eq!(lines[3], format!("{id}policy drop"));
    }
}
