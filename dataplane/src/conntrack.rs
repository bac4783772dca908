//! Connection tracking, first cut: one entry per connection reachable from both its original and its reply
//! tuple, the kernel's ct states and status bits, a simplified TCP state machine with the kernel's default
//! timeouts, UDP and ICMP echo, ICMP errors as RELATED, confirmation at the end of the hooks, incremental
//! expiry and a bounded table. One table per worker: no locks.

use crate::wire::{
    Ipv4Info, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};
use hashbrown::HashMap;
use std::net::Ipv4Addr;

/// `ct state` bits as the kernel defines them (NF_CT_STATE_*_BIT).
pub mod state {
    pub const INVALID: u32 = 1;
    pub const ESTABLISHED: u32 = 2;
    pub const RELATED: u32 = 4;
    pub const NEW: u32 = 8;
    pub const UNTRACKED: u32 = 64;
}

/// `ct status` bits (IPS_*).
pub mod status {
    pub const EXPECTED: u32 = 1;
    pub const SEEN_REPLY: u32 = 2;
    pub const ASSURED: u32 = 4;
    pub const CONFIRMED: u32 = 8;
}

const SEC: u64 = 1_000_000_000;
/// The kernel's default timeouts (net.netfilter.nf_conntrack_*_timeout*).
pub mod timeout {
    use super::SEC;
    pub const TCP_SYN_SENT: u64 = 120 * SEC;
    pub const TCP_SYN_RECV: u64 = 60 * SEC;
    pub const TCP_ESTABLISHED: u64 = 432_000 * SEC;
    pub const TCP_FIN_WAIT: u64 = 120 * SEC;
    pub const TCP_CLOSE_WAIT: u64 = 60 * SEC;
    pub const TCP_LAST_ACK: u64 = 30 * SEC;
    pub const TCP_TIME_WAIT: u64 = 120 * SEC;
    pub const TCP_CLOSE: u64 = 10 * SEC;
    pub const UDP: u64 = 30 * SEC;
    pub const UDP_STREAM: u64 = 120 * SEC;
    pub const ICMP: u64 = 30 * SEC;
    pub const GENERIC: u64 = 600 * SEC;
}

/// A connection's identity in one direction. For ICMP echo, `sport` is the identifier and `dport` the
/// echo type of that direction (8 request, 0 reply), so a request and its reply invert into each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl Tuple {
    pub fn invert(&self) -> Tuple {
        let (sport, dport) = match self.proto {
            IPPROTO_ICMP => (self.sport, if self.dport == 8 { 0 } else { 8 }),
            _ => (self.dport, self.sport),
        };
        Tuple {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            sport,
            dport,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Original,
    Reply,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    None,
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
}

impl TcpState {
    /// The name conntrack-tools prints.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub orig: Tuple,
    pub reply: Tuple,
    pub status: u32,
    pub tcp: TcpState,
    /// FINs seen per direction (original, reply).
    fin_seen: [bool; 2],
    pub expires: u64,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub mark: u32,
}

/// The tracker's view of one packet, computed before the hooks run and acted on after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtResult {
    /// Part of a known connection.
    Existing {
        idx: u32,
        dir: Dir,
        state: u32,
    },
    /// The first packet of a connection; it enters the table at confirmation if accepted.
    New {
        orig: Tuple,
    },
    /// An ICMP error about a known connection.
    Related,
    Invalid,
    Untracked,
}

impl CtResult {
    /// The `ct state` bits a rule sees.
    pub fn state(&self) -> u32 {
        match self {
            CtResult::Existing { state, .. } => *state,
            CtResult::New { .. } => state::NEW,
            CtResult::Related => state::RELATED,
            CtResult::Invalid => state::INVALID,
            CtResult::Untracked => state::UNTRACKED,
        }
    }
}

/// Outcome of [`Conntrack::confirm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    Inserted,
    NotNew,
    /// Someone confirmed the same tuple first (the kernel's clash): the packet joins that entry.
    Clash,
    TableFull,
}

pub struct Conntrack {
    map: HashMap<Tuple, (u32, Dir)>,
    slab: Vec<Option<Entry>>,
    free: Vec<u32>,
    max: usize,
    /// Where incremental expiry resumes.
    sweep: usize,
}

impl Conntrack {
    pub fn new(max: usize) -> Conntrack {
        Conntrack {
            map: HashMap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            max,
            sweep: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slab.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.slab.iter().flatten()
    }

    pub fn get(&self, idx: u32) -> Option<&Entry> {
        self.slab.get(idx as usize).and_then(|e| e.as_ref())
    }

    /// Classifies a packet and updates the connection it belongs to (as `nf_conntrack_in` does, before the
    /// filter hooks decide). `payload` is the transport header and data.
    pub fn track(&mut self, ip: &Ipv4Info, payload: &[u8], now: u64) -> CtResult {
        if ip.is_fragment {
            // Reassembly before conntrack (nf_defrag) is not built yet.
            return CtResult::Invalid;
        }
        if ip.proto == IPPROTO_ICMP {
            if let Some(icmp) = ip.icmp {
                if is_icmp_error(icmp.ty) {
                    return self.related(payload.get(8..).unwrap_or(&[]));
                }
                if icmp.ty != 8 && icmp.ty != 0 && icmp.ty != 13 && icmp.ty != 14 {
                    return CtResult::Invalid;
                }
            }
        }
        let Some(tuple) = tuple_of(ip) else {
            return CtResult::Invalid;
        };
        let len = ip.total_len as u64;
        match self.map.get(&tuple) {
            Some(&(idx, dir)) => {
                let entry = self.slab[idx as usize]
                    .as_mut()
                    .expect("map points at live entries");
                match update(entry, dir, ip, len, now) {
                    Some(state) => CtResult::Existing { idx, dir, state },
                    None => CtResult::Invalid,
                }
            }
            None => {
                if ip.proto == IPPROTO_TCP && !tcp_can_start(ip.tcp_flags) {
                    return CtResult::Invalid;
                }
                if ip.proto == IPPROTO_ICMP && tuple.dport != 8 {
                    // An echo reply (or timestamp reply) with no request is invalid, as in the kernel.
                    return CtResult::Invalid;
                }
                CtResult::New { orig: tuple }
            }
        }
    }

    fn related(&self, inner: &[u8]) -> CtResult {
        let Ok(info) = crate::wire::parse_inner_ipv4(inner) else {
            return CtResult::Invalid;
        };
        match tuple_of(&info).and_then(|t| self.map.get(&t)) {
            Some(_) => CtResult::Related,
            None => CtResult::Invalid,
        }
    }

    /// Enters a new connection into the table once the packet survived every hook (`__nf_conntrack_confirm`).
    pub fn confirm(&mut self, ct: CtResult, ip: &Ipv4Info, now: u64) -> Confirm {
        let CtResult::New { orig } = ct else {
            return Confirm::NotNew;
        };
        let reply = orig.invert();
        if self.map.contains_key(&orig) || self.map.contains_key(&reply) {
            return Confirm::Clash;
        }
        if self.len() >= self.max {
            return Confirm::TableFull;
        }
        let mut entry = Entry {
            orig,
            reply,
            status: status::CONFIRMED,
            tcp: TcpState::None,
            fin_seen: [false; 2],
            expires: now,
            packets: [0; 2],
            bytes: [0; 2],
            mark: 0,
        };
        if orig.proto == IPPROTO_TCP {
            entry.tcp = if ip.tcp_flags & TCP_SYN != 0 {
                TcpState::SynSent
            } else {
                TcpState::Established
            };
        }
        update(&mut entry, Dir::Original, ip, ip.total_len as u64, now);
        let idx = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(entry);
                i
            }
            None => {
                self.slab.push(Some(entry));
                (self.slab.len() - 1) as u32
            }
        };
        self.map.insert(orig, (idx, Dir::Original));
        self.map.insert(reply, (idx, Dir::Reply));
        Confirm::Inserted
    }

    /// Removes up to `budget` expired entries, resuming where the last call stopped, so expiry never
    /// stalls a worker. Returns how many were removed.
    pub fn expire_some(&mut self, now: u64, budget: usize) -> usize {
        let n = self.slab.len();
        if n == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            self.sweep = (self.sweep + 1) % n;
            let i = self.sweep;
            if matches!(&self.slab[i], Some(e) if e.expires <= now) {
                let e = self.slab[i].take().unwrap();
                self.map.remove(&e.orig);
                self.map.remove(&e.reply);
                self.free.push(i as u32);
                removed += 1;
            }
        }
        removed
    }

    /// Removes every entry (`conntrack -F`).
    pub fn flush(&mut self) {
        self.map.clear();
        self.slab.clear();
        self.free.clear();
        self.sweep = 0;
    }
}

fn is_icmp_error(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// A TCP packet may open a connection if it is a SYN, or (nf_conntrack_tcp_loose=1, the default) a bare ACK
/// picking up a connection in mid-stream. SYN/ACK, FIN and RST without a connection are invalid.
fn tcp_can_start(flags: u8) -> bool {
    let f = flags & (TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST);
    f == TCP_SYN || f == TCP_ACK
}

fn tuple_of(ip: &Ipv4Info) -> Option<Tuple> {
    let (sport, dport) = match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => (ip.sport, ip.dport),
        IPPROTO_ICMP => {
            let icmp = ip.icmp?;
            let dir_ty = match icmp.ty {
                8 | 13 => 8,
                0 | 14 => 0,
                _ => return None,
            };
            (icmp.id, dir_ty)
        }
        _ => (0, 0),
    };
    Some(Tuple {
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        sport,
        dport,
    })
}

/// Advances a connection for one packet; `None` when the packet is invalid for the connection's state.
fn update(e: &mut Entry, dir: Dir, ip: &Ipv4Info, len: u64, now: u64) -> Option<u32> {
    let d = dir as usize;
    if dir == Dir::Reply {
        e.status |= status::SEEN_REPLY;
    }
    let timeout = match ip.proto {
        IPPROTO_TCP => tcp_step(e, dir, ip.tcp_flags)?,
        IPPROTO_UDP => {
            if e.status & status::SEEN_REPLY != 0 && dir == Dir::Original && e.packets[1] > 0 {
                e.status |= status::ASSURED;
                timeout::UDP_STREAM
            } else {
                timeout::UDP
            }
        }
        IPPROTO_ICMP => timeout::ICMP,
        _ => timeout::GENERIC,
    };
    e.packets[d] += 1;
    e.bytes[d] += len;
    e.expires = now + timeout;
    Some(
        if dir == Dir::Original && e.status & status::SEEN_REPLY == 0 {
            state::NEW
        } else {
            state::ESTABLISHED
        },
    )
}

fn tcp_step(e: &mut Entry, dir: Dir, flags: u8) -> Option<u64> {
    use TcpState::*;
    let syn = flags & TCP_SYN != 0;
    let ack = flags & TCP_ACK != 0;
    if flags & TCP_RST != 0 {
        e.tcp = Close;
        return Some(timeout::TCP_CLOSE);
    }
    if flags & TCP_FIN != 0 {
        e.fin_seen[dir as usize] = true;
    }
    e.tcp = match (e.tcp, dir) {
        (SynSent | None, Dir::Original) if syn && !ack => SynSent,
        (SynSent, Dir::Reply) if syn && ack => SynRecv,
        (SynSent, Dir::Reply) if syn => SynRecv, // simultaneous open
        (SynRecv, Dir::Original) if ack && !syn => {
            e.status |= status::ASSURED;
            Established
        }
        (SynRecv, Dir::Reply) if syn && ack => SynRecv, // retransmitted SYN/ACK
        (TimeWait | Close, Dir::Original) if syn && !ack => {
            // A new connection reusing the tuple (the kernel re-opens it).
            e.fin_seen = [false; 2];
            e.status &= !status::ASSURED;
            SynSent
        }
        (_, _) if syn && !matches!(e.tcp, SynSent | SynRecv) => return Option::None,
        (s, _) => {
            if e.fin_seen[0] && e.fin_seen[1] {
                if ack && flags & TCP_FIN == 0 {
                    TimeWait
                } else {
                    LastAck
                }
            } else if e.fin_seen[0] || e.fin_seen[1] {
                if flags & TCP_FIN != 0 {
                    FinWait
                } else if matches!(s, FinWait | CloseWait) {
                    CloseWait
                } else {
                    FinWait
                }
            } else {
                if matches!(s, SynRecv) && ack {
                    e.status |= status::ASSURED;
                    Established
                } else {
                    s
                }
            }
        }
    };
    Some(match e.tcp {
        None | SynSent => timeout::TCP_SYN_SENT,
        SynRecv => timeout::TCP_SYN_RECV,
        Established => timeout::TCP_ESTABLISHED,
        FinWait => timeout::TCP_FIN_WAIT,
        CloseWait => timeout::TCP_CLOSE_WAIT,
        LastAck => timeout::TCP_LAST_ACK,
        TimeWait => timeout::TCP_TIME_WAIT,
        Close => timeout::TCP_CLOSE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::{ipv4_frame, tcp_header};
    use crate::wire::{parse_ipv4, ETH_HLEN};

    fn tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: u8) -> (Ipv4Info, Vec<u8>) {
        let f = ipv4_frame(src, dst, IPPROTO_TCP, &tcp_header(sp, dp, flags), 64);
        (parse_ipv4(&f, ETH_HLEN).unwrap(), f)
    }

    const C: [u8; 4] = [192, 0, 2, 2];
    const S: [u8; 4] = [198, 51, 100, 2];

    fn step(
        ct: &mut Conntrack,
        src: [u8; 4],
        dst: [u8; 4],
        sp: u16,
        dp: u16,
        flags: u8,
        now: u64,
    ) -> CtResult {
        let (ip, f) = tcp(src, dst, sp, dp, flags);
        let r = ct.track(&ip, &f[ip.th_off.unwrap()..], now);
        ct.confirm(r, &ip, now);
        r
    }

    #[test]
    fn tcp_handshake_goes_new_then_established() {
        let mut ct = Conntrack::new(16);
        assert_eq!(
            step(&mut ct, C, S, 4000, 80, TCP_SYN, 0).state(),
            state::NEW
        );
        assert_eq!(ct.len(), 1);
        assert_eq!(
            step(&mut ct, S, C, 80, 4000, TCP_SYN | TCP_ACK, 1).state(),
            state::ESTABLISHED
        );
        assert_eq!(
            step(&mut ct, C, S, 4000, 80, TCP_ACK, 2).state(),
            state::ESTABLISHED
        );
        let e = ct.entries().next().unwrap();
        assert_eq!(e.tcp, TcpState::Established);
        assert_ne!(e.status & status::ASSURED, 0);
        assert_eq!(e.packets, [2, 1]);
        step(&mut ct, C, S, 4000, 80, TCP_FIN | TCP_ACK, 3);
        step(&mut ct, S, C, 80, 4000, TCP_FIN | TCP_ACK, 4);
        step(&mut ct, C, S, 4000, 80, TCP_ACK, 5);
        assert_eq!(ct.entries().next().unwrap().tcp, TcpState::TimeWait);
    }

    #[test]
    fn stray_synack_and_rst_are_invalid() {
        let mut ct = Conntrack::new(16);
        assert_eq!(
            step(&mut ct, S, C, 80, 4000, TCP_SYN | TCP_ACK, 0),
            CtResult::Invalid
        );
        assert_eq!(step(&mut ct, S, C, 80, 4000, TCP_RST, 0), CtResult::Invalid);
        assert!(ct.is_empty());
    }

    #[test]
    fn expiry_is_incremental_and_table_is_bounded() {
        let mut ct = Conntrack::new(2);
        step(&mut ct, C, S, 1, 80, TCP_SYN, 0);
        step(&mut ct, C, S, 2, 80, TCP_SYN, 0);
        let (ip, f) = tcp(C, S, 3, 80, TCP_SYN);
        let r = ct.track(&ip, &f[ip.th_off.unwrap()..], 0);
        assert_eq!(ct.confirm(r, &ip, 0), Confirm::TableFull);
        assert_eq!(ct.expire_some(timeout::TCP_SYN_SENT - 1, 10), 0);
        assert_eq!(ct.expire_some(timeout::TCP_SYN_SENT, 1), 1);
        assert_eq!(ct.expire_some(timeout::TCP_SYN_SENT, 10), 1);
        assert!(ct.is_empty());
    }

    #[test]
    fn icmp_error_quoting_a_connection_is_related() {
        let mut ct = Conntrack::new(16);
        let udp = [0x0f, 0xa0, 0x27, 0x0f, 0, 8, 0, 0];
        let f = ipv4_frame(C, S, IPPROTO_UDP, &udp, 64);
        let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
        let r = ct.track(&ip, &f[ip.th_off.unwrap()..], 0);
        ct.confirm(r, &ip, 0);
        // Port unreachable from S, quoting the datagram.
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&f[ETH_HLEN..ETH_HLEN + 28]);
        let e = ipv4_frame(S, C, IPPROTO_ICMP, &icmp, 64);
        let eip = parse_ipv4(&e, ETH_HLEN).unwrap();
        assert_eq!(
            ct.track(&eip, &e[eip.th_off.unwrap()..], 1),
            CtResult::Related
        );
        // The same error about an unknown flow is invalid.
        let mut other = icmp.clone();
        other[8 + 20] = 0x10;
        let e2 = ipv4_frame(S, C, IPPROTO_ICMP, &other, 64);
        let eip2 = parse_ipv4(&e2, ETH_HLEN).unwrap();
        assert_eq!(
            ct.track(&eip2, &e2[eip2.th_off.unwrap()..], 1),
            CtResult::Invalid
        );
    }

    #[test]
    fn echo_reply_matches_request() {
        let mut ct = Conntrack::new(16);
        let req = ipv4_frame(C, S, IPPROTO_ICMP, &[8, 0, 0, 0, 0, 7, 0, 1], 64);
        let ip = parse_ipv4(&req, ETH_HLEN).unwrap();
        let r = ct.track(&ip, &req[34..], 0);
        assert_eq!(r.state(), state::NEW);
        ct.confirm(r, &ip, 0);
        let rep = ipv4_frame(S, C, IPPROTO_ICMP, &[0, 0, 0, 0, 0, 7, 0, 1], 64);
        let ip = parse_ipv4(&rep, ETH_HLEN).unwrap();
        assert_eq!(ct.track(&ip, &rep[34..], 1).state(), state::ESTABLISHED);
        let lone = ipv4_frame(C, S, IPPROTO_ICMP, &[0, 0, 0, 0, 0, 9, 0, 1], 64);
        let ip = parse_ipv4(&lone, ETH_HLEN).unwrap();
        assert_eq!(ct.track(&ip, &lone[34..], 1), CtResult::Invalid);
    }
}
