//! The kernel's TCP connection tracker (nf_conntrack_proto_tcp.c), re-implemented: the `tcp_conntracks`
//! state table for both directions, the flag index, window tracking after Guido van Rooij's "Real Stateful
//! TCP Packet Filtering in IP Filter" with the kernel's boundaries, the ignore/re-sync logic for packets the
//! state table cannot place, RST validation, retransmission counting and the timeout choice.

use super::status;
use super::sysctl::Sysctls;

/// TCP conntrack states, numbered as the kernel numbers them (`enum tcp_conntrack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum TcpState {
    #[default]
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    SynSent2 = 9,
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
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    pub fn from_name(s: &str) -> Option<TcpState> {
        ALL.iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }

    fn from_u8(v: u8) -> TcpState {
        ALL[v as usize]
    }

    /// States in which the kernel lets a connection be dropped early even when assured.
    pub fn can_early_drop(self) -> bool {
        matches!(
            self,
            TcpState::FinWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
                | TcpState::CloseWait
        )
    }
}

const ALL: [TcpState; 10] = [
    TcpState::None,
    TcpState::SynSent,
    TcpState::SynRecv,
    TcpState::Established,
    TcpState::FinWait,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::TimeWait,
    TcpState::Close,
    TcpState::SynSent2,
];

// Table cells: a state, or one of the two pseudo-states.
const NO: u8 = 0;
const SS: u8 = 1;
const SR: u8 = 2;
const ES: u8 = 3;
const FW: u8 = 4;
const CW: u8 = 5;
const LA: u8 = 6;
const TW: u8 = 7;
const CL: u8 = 8;
const S2: u8 = 9;
/// Invalid (TCP_CONNTRACK_MAX).
const IV: u8 = 10;
/// Ignore (TCP_CONNTRACK_IGNORE).
const IG: u8 = 11;

/// Which of RST/SYN/FIN/ACK decide the transition (`get_conntrack_index`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Index {
    Syn = 0,
    SynAck = 1,
    Fin = 2,
    Ack = 3,
    Rst = 4,
    None = 5,
}

impl Index {
    pub fn of(flags: u8) -> Index {
        if flags & RST != 0 {
            Index::Rst
        } else if flags & SYN != 0 {
            if flags & ACK != 0 {
                Index::SynAck
            } else {
                Index::Syn
            }
        } else if flags & FIN != 0 {
            Index::Fin
        } else if flags & ACK != 0 {
            Index::Ack
        } else {
            Index::None
        }
    }
}

/// `tcp_conntracks[dir][index][old state]`, columns NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT,
/// CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2.
#[rustfmt::skip]
const TABLE: [[[u8; 10]; 6]; 2] = [
    // ORIGINAL
    [
        /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    // REPLY
    [
        /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

// ip_ct_tcp_state.flags
const F_WINDOW_SCALE: u8 = 0x01;
const F_SACK_PERM: u8 = 0x02;
const F_CLOSE_INIT: u8 = 0x04;
const F_BE_LIBERAL: u8 = 0x08;
const F_DATA_UNACKNOWLEDGED: u8 = 0x10;
const F_MAXACK_SET: u8 = 0x20;
// ip_ct_tcp.last_flags
const F_EXP_CHALLENGE_ACK: u8 = 0x40;
const F_SIMULTANEOUS_OPEN: u8 = 0x80;

const MAX_WSCALE: u8 = 14;
const MAXACKWINCONST: u32 = 66000;

/// Per-connection TCP state: `struct ip_ct_tcp`, packed (56 bytes). Index 0 is the original direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCt {
    pub state: TcpState,
    last_dir: u8,
    last_index: u8,
    retrans: u8,
    last_flags: u8,
    last_wscale: u8,
    td_scale: [u8; 2],
    flags: [u8; 2],
    last_win: u16,
    td_end: [u32; 2],
    td_maxend: [u32; 2],
    td_maxwin: [u32; 2],
    td_maxack: [u32; 2],
    last_seq: u32,
    last_ack: u32,
    last_end: u32,
}

/// What the tracker needs from one TCP segment.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub flags: u8,
    /// Bytes of payload after the header.
    pub payload: u32,
    /// The options (header bytes 20..doff*4).
    pub options: &'a [u8],
}

impl<'a> Segment<'a> {
    /// Parses a TCP header at the start of `l4` (which runs to the end of the IP packet), with the kernel's
    /// `tcp_error` checks: header length and valid flag combinations. `None` means invalid.
    pub fn parse(l4: &'a [u8]) -> Option<Segment<'a>> {
        if l4.len() < 20 {
            return None;
        }
        let doff = (l4[12] >> 4) as usize * 4;
        if doff < 20 || l4.len() < doff {
            return None;
        }
        let flags = l4[13];
        if !valid_flags(flags) {
            return None;
        }
        Some(Segment {
            seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
            ack: u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]),
            win: u16::from_be_bytes([l4[14], l4[15]]),
            flags,
            payload: (l4.len() - doff) as u32,
            options: &l4[20..doff],
        })
    }

    fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.payload)
            .wrapping_add((self.flags & SYN != 0) as u32)
            .wrapping_add((self.flags & FIN != 0) as u32)
    }

    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// The kernel's `tcp_valid_flags`: PSH, ECE and CWR are always allowed.
fn valid_flags(flags: u8) -> bool {
    let f = flags & !(ECE | CWR | PSH);
    matches!(
        f,
        x if x == SYN
            || x == SYN | URG
            || x == SYN | ACK
            || x == RST
            || x == RST | ACK
            || x == FIN | ACK
            || x == FIN | ACK | URG
            || x == ACK
            || x == ACK | URG
    )
}

fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// What the tracker decided for a packet of a known connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// In window: refresh the timeout to this many seconds (`None`: keep the current one).
    Accept(Option<u32>),
    /// A RST answering a connection that never saw a reply: the entry dies, the packet passes.
    AcceptKill,
    /// Let the packet through without touching the connection (out of sync, `sIG`).
    Ignore,
    /// Invalid; `Some(secs)`: also shorten the connection's timeout to this.
    Invalid(Option<u32>),
    /// A SYN re-opening a closed connection: delete the entry and track the packet as new.
    Repeat,
}

impl TcpCt {
    /// The highest sequence seen from direction `d` (`td_end`).
    pub fn td_end(&self, d: usize) -> u32 {
        self.td_end[d]
    }

    /// `tcp_new`: sets up a connection for its first packet (original direction). `None` if the packet
    /// cannot open one (only a SYN, or with `nf_conntrack_tcp_loose` an ACK picking up a connection).
    pub fn new(seg: &Segment, cfg: &Sysctls) -> Option<TcpCt> {
        let index = Index::of(seg.flags);
        let new_state = TABLE[0][index as usize][NO as usize];
        let mut t = TcpCt::default();
        let end = seg.end();
        match new_state {
            SS => {
                t.td_end[0] = end;
                t.td_maxwin[0] = (seg.win as u32).max(1);
                t.td_maxend[0] = end;
                tcp_options(seg.options, &mut t.td_scale[0], &mut t.flags[0]);
            }
            ES if cfg.tcp_loose => {
                t.td_end[0] = end;
                t.td_maxwin[0] = (seg.win as u32).max(1);
                t.td_maxend[0] = end.wrapping_add(t.td_maxwin[0]);
                t.flags = [F_SACK_PERM | F_BE_LIBERAL; 2];
            }
            _ => return None,
        }
        t.last_index = Index::None as u8;
        Some(t)
    }

    fn init_sender(&mut self, d: usize, seg: &Segment, end: u32, win: u32) {
        self.td_end[d] = end;
        self.td_maxend[d] = end;
        self.td_maxwin[d] = win.max(1);
        tcp_options(seg.options, &mut self.td_scale[d], &mut self.flags[d]);
        // RFC 1323: scaling only when both sides offered it.
        if d == 1 && !(self.flags[1] & F_WINDOW_SCALE != 0 && self.flags[0] & F_WINDOW_SCALE != 0) {
            self.td_scale = [0, 0];
        }
    }

    /// `tcp_in_window`.
    fn in_window(&mut self, d: usize, index: Index, seg: &Segment, cfg: &Sysctls) -> Outcome {
        let r = 1 - d;
        let mut seq = seg.seq;
        let mut ack = seg.ack;
        let mut sack = ack;
        let win_raw = seg.win;
        let mut win = win_raw as u32;
        let mut end = seg.end();

        if self.flags[r] & F_SACK_PERM != 0 {
            tcp_sack(seg.options, &mut sack);
        }

        if self.td_maxwin[d] == 0 {
            if seg.has(SYN) {
                self.init_sender(d, seg, end, win);
                if !seg.has(ACK) {
                    // Simultaneous open.
                    return Outcome::Accept(None);
                }
            } else {
                // Mid-connection pickup in this direction: use what the packet says.
                self.td_end[d] = end;
                let swin = win << self.td_scale[d];
                self.td_maxwin[d] = swin.max(1);
                self.td_maxend[d] = end.wrapping_add(self.td_maxwin[d]);
                if self.td_maxwin[r] == 0 {
                    self.td_end[r] = sack;
                    self.td_maxend[r] = sack;
                } else if sack == self.td_end[r].wrapping_add(1) {
                    // Likely a reply to a keepalive.
                    self.td_end[r] = self.td_end[r].wrapping_add(1);
                }
            }
        } else if seg.has(SYN)
            && after(end, self.td_end[d])
            && matches!(self.state, TcpState::SynSent | TcpState::SynRecv)
        {
            // A re-initialised endpoint (RFC 793): take this SYN's parameters.
            self.init_sender(d, seg, end, win);
            if d == 1 && !seg.has(ACK) {
                return Outcome::Accept(None);
            }
        }

        if !seg.has(ACK) {
            ack = self.td_end[r];
            sack = ack;
        } else if seg.flags & (ACK | RST) == ACK | RST && ack == 0 {
            // Broken stacks: ACK set in RST with a zero ack value.
            ack = self.td_end[r];
            sack = ack;
        }

        if seg.has(RST) && seq == 0 && self.state == TcpState::SynSent {
            // RST answering a SYN.
            seq = self.td_end[d];
            end = seq;
        }

        let liberal = self.flags[d] & F_BE_LIBERAL != 0 || cfg.tcp_be_liberal;
        let log = |ret: Outcome| if liberal { Outcome::Accept(None) } else { ret };
        let maxackwin = self.td_maxwin[d].max(MAXACKWINCONST);

        let seq_ok = before(seq, self.td_maxend[d].wrapping_add(1));
        if !seq_ok {
            let overshot = end.wrapping_sub(self.td_maxend[d]).wrapping_add(1);
            let ack_ok = after(sack, self.td_end[r].wrapping_sub(maxackwin).wrapping_sub(1));
            let in_recv_win = self.td_maxwin[r] != 0
                && after(
                    end,
                    self.td_end[d]
                        .wrapping_sub(self.td_maxwin[r])
                        .wrapping_sub(1),
                );
            if in_recv_win
                && ack_ok
                && overshot <= self.td_maxwin[r]
                && before(sack, self.td_end[r].wrapping_add(1))
            {
                // More data than the window allowed: remember it so its ACK is not "over upper bound".
                self.td_end[d] = end;
                self.flags[d] |= F_DATA_UNACKNOWLEDGED;
                return log(Outcome::Ignore);
            }
            return log(Outcome::Invalid(None));
        }
        if !before(sack, self.td_end[r].wrapping_add(1)) {
            // ACK over upper bound: acknowledges data not seen yet.
            return log(Outcome::Invalid(None));
        }
        let in_recv_win = self.td_maxwin[r] == 0
            || after(
                end,
                self.td_end[d]
                    .wrapping_sub(self.td_maxwin[r])
                    .wrapping_sub(1),
            );
        if !in_recv_win {
            // SEQ under lower bound: already acknowledged data retransmitted.
            return log(Outcome::Ignore);
        }
        if !after(sack, self.td_end[r].wrapping_sub(maxackwin).wrapping_sub(1)) {
            // ACK under lower bound (overly delayed).
            return log(Outcome::Ignore);
        }

        if !seg.has(SYN) {
            win <<= self.td_scale[d];
        }
        // Update the sender.
        let swin = win.wrapping_add(sack.wrapping_sub(ack));
        if self.td_maxwin[d] < swin {
            self.td_maxwin[d] = swin;
        }
        if after(end, self.td_end[d]) {
            self.td_end[d] = end;
            self.flags[d] |= F_DATA_UNACKNOWLEDGED;
        }
        if seg.has(ACK) {
            if self.flags[d] & F_MAXACK_SET == 0 {
                self.td_maxack[d] = ack;
                self.flags[d] |= F_MAXACK_SET;
            } else if after(ack, self.td_maxack[d]) {
                self.td_maxack[d] = ack;
            }
        }
        // Update the receiver.
        if self.td_maxwin[r] != 0 && after(end, self.td_maxend[d]) {
            self.td_maxwin[r] = self.td_maxwin[r].wrapping_add(end.wrapping_sub(self.td_maxend[d]));
        }
        if after(sack.wrapping_add(win), self.td_maxend[r].wrapping_sub(1)) {
            self.td_maxend[r] = sack.wrapping_add(win);
            if win == 0 {
                self.td_maxend[r] = self.td_maxend[r].wrapping_add(1);
            }
        }
        if ack == self.td_end[r] {
            self.flags[r] &= !F_DATA_UNACKNOWLEDGED;
        }
        // Retransmissions.
        if index == Index::Ack {
            if self.last_dir as usize == d
                && self.last_seq == seq
                && self.last_ack == ack
                && self.last_end == end
                && self.last_win == win_raw
            {
                self.retrans = self.retrans.saturating_add(1);
            } else {
                self.last_dir = d as u8;
                self.last_seq = seq;
                self.last_ack = ack;
                self.last_end = end;
                self.last_win = win_raw;
                self.retrans = 0;
            }
        }
        Outcome::Accept(None)
    }

    /// `nf_tcp_handle_invalid`: an out-of-window FIN/RST answering one from the other side shortens the
    /// timeout of an assured connection, so dead connections do not linger for days.
    fn handle_invalid(
        &mut self,
        d: usize,
        index: Index,
        status: u16,
        expires_in: u32,
        cfg: &Sysctls,
    ) -> Option<u32> {
        if status & status::ASSURED == 0 || !matches!(index, Index::Rst | Index::Fin) {
            return None;
        }
        let last = self.last_index;
        if self.last_dir as usize != d && (last == Index::Fin as u8 || last == Index::Rst as u8) {
            if expires_in < 120 {
                return None;
            }
            if expires_in > cfg.tcp_timeout_unacknowledged {
                return Some(cfg.tcp_timeout_unacknowledged);
            }
            None
        } else {
            self.last_index = index as u8;
            self.last_dir = d as u8;
            None
        }
    }

    /// `nf_conntrack_tcp_packet` for a connection that exists (or was just set up by [`TcpCt::new`]).
    /// `d` is 0 for the original direction; `status` the entry's status bits (ASSURED may be set here);
    /// `expires_in` the seconds left on the entry.
    pub fn packet(
        &mut self,
        d: usize,
        seg: &Segment,
        status: &mut u16,
        expires_in: u32,
        cfg: &Sysctls,
    ) -> Outcome {
        let mut old_state = self.state;
        let index = Index::of(seg.flags);
        let mut new_state = TABLE[d][index as usize][old_state as usize];
        let seen_reply = *status & status::SEEN_REPLY != 0;
        let mut skip_window = false;

        match new_state {
            SS | IG => {
                let reopen = new_state == SS
                    && old_state as u8 >= TW
                    && ((self.flags[d] | self.flags[1 - d]) & F_CLOSE_INIT != 0
                        || (self.last_dir as usize == d && self.last_index == Index::Rst as u8));
                if reopen {
                    return Outcome::Repeat;
                }
                if !(new_state == SS && (old_state as u8) < TW) {
                    // Ignored packets: we may be out of sync with the endpoints.
                    if index == Index::SynAck
                        && self.last_index == Index::Syn as u8
                        && self.last_dir as usize != d
                        && seg.ack == self.last_end
                    {
                        // This SYN/ACK answers a SYN we ignored: both ends are in sync, we were not.
                        let ld = self.last_dir as usize;
                        self.td_end[ld] = self.last_end;
                        self.td_maxend[ld] = self.last_end;
                        self.td_maxwin[ld] = (self.last_win as u32).max(1);
                        self.td_scale[ld] = self.last_wscale;
                        self.last_flags &= !F_EXP_CHALLENGE_ACK;
                        self.flags[ld] = self.last_flags;
                        self.td_end[d] = 0;
                        self.td_maxend[d] = 0;
                        self.td_maxwin[d] = 0;
                        self.td_maxack[d] = 0;
                        self.td_scale[d] = 0;
                        self.flags[d] &= F_BE_LIBERAL;
                        old_state = TcpState::SynSent;
                        new_state = SR;
                    } else {
                        self.last_index = index as u8;
                        self.last_dir = d as u8;
                        self.last_seq = seg.seq;
                        self.last_end = seg.end();
                        self.last_win = seg.win;
                        if index == Index::Syn && d == 0 {
                            // A SYN in the original direction: note its options, in case the server
                            // answers it with a SYN/ACK.
                            let (mut scale, mut flags) = (0u8, 0u8);
                            tcp_options(seg.options, &mut scale, &mut flags);
                            self.last_flags = 0;
                            self.last_wscale = 0;
                            if flags & F_WINDOW_SCALE != 0 {
                                self.last_flags |= F_WINDOW_SCALE;
                                self.last_wscale = scale;
                            }
                            if flags & F_SACK_PERM != 0 {
                                self.last_flags |= F_SACK_PERM;
                            }
                            if old_state == TcpState::LastAck {
                                self.last_flags |= F_EXP_CHALLENGE_ACK;
                            }
                        }
                        if old_state == TcpState::SynSent && index == Index::Ack && d == 1 {
                            // Possibly a challenge ACK answering the SYN.
                            self.last_ack = seg.ack;
                        }
                        return Outcome::Ignore;
                    }
                }
            }
            IV => return Outcome::Invalid(None),
            TW => {
                if old_state == TcpState::LastAck
                    && index == Index::Ack
                    && self.last_dir as usize != d
                    && self.last_index == Index::Syn as u8
                    && self.last_flags & F_EXP_CHALLENGE_ACK != 0
                {
                    // An RFC 5961 challenge ACK does not acknowledge the last FIN.
                    self.last_flags &= !F_EXP_CHALLENGE_ACK;
                    return Outcome::Ignore;
                }
            }
            S2 => self.last_flags |= F_SIMULTANEOUS_OPEN,
            SR => {
                if d == 1 && index == Index::Ack && self.last_flags & F_SIMULTANEOUS_OPEN != 0 {
                    new_state = ES;
                }
            }
            CL if index == Index::Rst => {
                skip_window = 'rst: {
                    if self.state.can_early_drop() {
                        // Closing already: the tuple may have been reused; skip validation.
                        break 'rst true;
                    }
                    let r = 1 - d;
                    if self.flags[r] & F_MAXACK_SET != 0 && self.last_index != Index::Syn as u8 {
                        let seq = seg.seq;
                        let established =
                            self.state == TcpState::Established && *status & status::ASSURED != 0;
                        if seq == 0 && !established {
                            // Most likely answers a SYN we let through.
                            break 'rst false;
                        }
                        if before(seq, self.td_maxack[r]) && !cfg.tcp_ignore_invalid_rst {
                            return Outcome::Invalid(None);
                        }
                        if !established || seq == self.td_maxack[r] {
                            break 'rst false;
                        }
                        if self.last_index == Index::Ack as u8
                            && self.last_dir as usize == d
                            && seq == self.last_end
                        {
                            // A RST at the end of a train of data.
                            break 'rst false;
                        }
                        // Not exactly in sequence: keep the state to allow a challenge ACK.
                        new_state = old_state as u8;
                    }
                    let answers_let_through = ((seen_reply && self.last_index == Index::Syn as u8)
                        || (*status & status::ASSURED == 0 && self.last_index == Index::Ack as u8))
                        && seg.ack == self.last_end;
                    let answers_challenge = old_state == TcpState::SynSent
                        && self.last_index == Index::Ack as u8
                        && self.last_dir == 1
                        && seg.seq == self.last_ack;
                    answers_let_through || answers_challenge
                };
            }
            _ => {}
        }

        if !skip_window {
            match self.in_window(d, index, seg, cfg) {
                Outcome::Accept(_) => {}
                Outcome::Invalid(_) => {
                    let t = self.handle_invalid(d, index, *status, expires_in, cfg);
                    return Outcome::Invalid(t);
                }
                other => return other,
            }
        }

        // In window from here on.
        self.last_index = index as u8;
        self.last_dir = d as u8;
        let new = TcpState::from_u8(new_state);
        self.state = new;
        if old_state != new && new == TcpState::FinWait {
            self.flags[d] |= F_CLOSE_INIT;
        }

        let state_timeout = timeout_of(new, cfg);
        let unacked = (self.flags[0] | self.flags[1]) & F_DATA_UNACKNOWLEDGED != 0;
        let mut timeout =
            if self.retrans >= cfg.tcp_max_retrans && state_timeout > cfg.tcp_timeout_max_retrans {
                cfg.tcp_timeout_max_retrans
            } else if index == Index::Rst {
                cfg.tcp_timeout_close
            } else if unacked && state_timeout > cfg.tcp_timeout_unacknowledged {
                cfg.tcp_timeout_unacknowledged
            } else if self.last_win == 0 && state_timeout > cfg.tcp_timeout_max_retrans {
                cfg.tcp_timeout_max_retrans
            } else {
                state_timeout
            };

        if !seen_reply {
            if seg.has(RST) {
                // The only answer was a RST: no connection to keep.
                return Outcome::AcceptKill;
            }
            if index == Index::Syn && old_state == TcpState::SynSent {
                // A retransmitted SYN does not renew the timeout (port reuse could keep it alive forever).
                return Outcome::Accept(None);
            }
            if new == TcpState::Established && timeout > cfg.tcp_timeout_unacknowledged {
                // Picked up mid-connection without a reply yet.
                timeout = cfg.tcp_timeout_unacknowledged;
            }
        } else if *status & status::ASSURED == 0
            && matches!(old_state, TcpState::SynRecv | TcpState::Established)
            && new == TcpState::Established
        {
            *status |= status::ASSURED;
        }
        Outcome::Accept(Some(timeout))
    }
}

/// The timeout of a state, in seconds.
pub fn timeout_of(s: TcpState, cfg: &Sysctls) -> u32 {
    match s {
        TcpState::None | TcpState::SynSent | TcpState::SynSent2 => cfg.tcp_timeout_syn_sent,
        TcpState::SynRecv => cfg.tcp_timeout_syn_recv,
        TcpState::Established => cfg.tcp_timeout_established,
        TcpState::FinWait => cfg.tcp_timeout_fin_wait,
        TcpState::CloseWait => cfg.tcp_timeout_close_wait,
        TcpState::LastAck => cfg.tcp_timeout_last_ack,
        TcpState::TimeWait => cfg.tcp_timeout_time_wait,
        TcpState::Close => cfg.tcp_timeout_close,
    }
}

/// `tcp_options`: window scale and SACK-permitted.
fn tcp_options(opts: &[u8], scale: &mut u8, flags: &mut u8) {
    if opts.is_empty() {
        return;
    }
    *scale = 0;
    *flags &= F_BE_LIBERAL;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return,
            1 => i += 1,
            kind => {
                let Some(&size) = opts.get(i + 1) else {
                    return;
                };
                let size = size as usize;
                if size < 2 || i + size > opts.len() {
                    return;
                }
                if kind == 4 && size == 2 {
                    *flags |= F_SACK_PERM;
                } else if kind == 3 && size == 3 {
                    *scale = opts[i + 2].min(MAX_WSCALE);
                    *flags |= F_WINDOW_SCALE;
                }
                i += size;
            }
        }
    }
}

/// `tcp_sack`: the highest right edge of the SACK blocks, if above `sack`.
fn tcp_sack(opts: &[u8], sack: &mut u32) {
    if opts.len() == 12 && opts[..4] == [1, 1, 8, 10] {
        return; // timestamps only
    }
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return,
            1 => i += 1,
            kind => {
                let Some(&size) = opts.get(i + 1) else {
                    return;
                };
                let size = size as usize;
                if size < 2 || i + size > opts.len() {
                    return;
                }
                if kind == 5 && size >= 10 && (size - 2) % 8 == 0 {
                    let mut b = i + 2;
                    while b + 8 <= i + size {
                        let right = u32::from_be_bytes([
                            opts[b + 4],
                            opts[b + 5],
                            opts[b + 6],
                            opts[b + 7],
                        ]);
                        if after(right, *sack) {
                            *sack = right;
                        }
                        b += 8;
                    }
                    return;
                }
                i += size;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u32, ack: u32, flags: u8, payload: u32) -> Segment<'static> {
        Segment {
            seq,
            ack,
            win: 64240,
            flags,
            payload,
            options: &[],
        }
    }

    /// Drives one packet through a connection the way the table does: returns the outcome and the state.
    struct Conn {
        t: TcpCt,
        status: u16,
        cfg: Sysctls,
    }

    impl Conn {
        fn open(s: &Segment) -> Option<Conn> {
            let cfg = Sysctls::default();
            let t = TcpCt::new(s, &cfg)?;
            let mut c = Conn { t, status: 0, cfg };
            let o = c.pkt(0, s);
            assert!(matches!(o, Outcome::Accept(_)), "{o:?}");
            Some(c)
        }
        fn pkt(&mut self, d: usize, s: &Segment) -> Outcome {
            let o = self.t.packet(d, s, &mut self.status, 1000, &self.cfg);
            if d == 1 && !matches!(o, Outcome::Invalid(_)) {
                self.status |= status::SEEN_REPLY;
            }
            o
        }
    }

    const C: u32 = 1000; // client ISN
    const S: u32 = 5000; // server ISN

    fn handshake() -> Conn {
        let mut c = Conn::open(&seg(C, 0, SYN, 0)).unwrap();
        assert_eq!(c.t.state, TcpState::SynSent);
        assert_eq!(
            c.pkt(1, &seg(S, C + 1, SYN | ACK, 0)),
            Outcome::Accept(Some(60))
        );
        assert_eq!(c.t.state, TcpState::SynRecv);
        assert_eq!(c.status & status::ASSURED, 0);
        assert_eq!(
            c.pkt(0, &seg(C + 1, S + 1, ACK, 0)),
            Outcome::Accept(Some(432_000))
        );
        assert_eq!(c.t.state, TcpState::Established);
        assert_ne!(c.status & status::ASSURED, 0);
        c
    }

    #[test]
    fn table_matches_the_kernel_for_the_common_paths() {
        // Spot checks against nf_conntrack_proto_tcp.c's table, both directions.
        let t = |d: usize, i: Index, s: TcpState| TABLE[d][i as usize][s as usize];
        assert_eq!(t(0, Index::Syn, TcpState::None), SS);
        assert_eq!(t(0, Index::Syn, TcpState::TimeWait), SS);
        assert_eq!(t(0, Index::Syn, TcpState::Established), IG);
        assert_eq!(t(1, Index::Syn, TcpState::SynSent), S2);
        assert_eq!(t(1, Index::Syn, TcpState::TimeWait), SS);
        assert_eq!(t(0, Index::SynAck, TcpState::SynSent2), SR);
        assert_eq!(t(1, Index::SynAck, TcpState::SynSent), SR);
        assert_eq!(t(1, Index::SynAck, TcpState::Established), IG);
        assert_eq!(t(0, Index::Fin, TcpState::SynSent), IV);
        assert_eq!(t(1, Index::Fin, TcpState::FinWait), LA);
        assert_eq!(t(0, Index::Ack, TcpState::None), ES);
        assert_eq!(t(1, Index::Ack, TcpState::None), IV);
        assert_eq!(t(1, Index::Ack, TcpState::SynSent), IG);
        assert_eq!(t(0, Index::Ack, TcpState::LastAck), TW);
        assert_eq!(t(0, Index::Rst, TcpState::None), IV);
        assert_eq!(t(1, Index::Rst, TcpState::SynSent2), CL);
        for d in 0..2 {
            assert!(TABLE[d][Index::None as usize].iter().all(|&c| c == IV));
        }
    }

    #[test]
    fn flag_combinations_follow_tcp_error() {
        assert!(valid_flags(SYN));
        assert!(valid_flags(SYN | ACK | ECE | CWR));
        assert!(valid_flags(FIN | ACK | PSH));
        assert!(!valid_flags(FIN));
        assert!(!valid_flags(SYN | FIN));
        assert!(!valid_flags(SYN | RST));
        assert!(!valid_flags(0));
        let mut h = [0u8; 20];
        h[12] = 5 << 4;
        h[13] = SYN | FIN;
        assert!(Segment::parse(&h).is_none());
        h[13] = SYN;
        h[12] = 4 << 4;
        assert!(Segment::parse(&h).is_none(), "doff below 5");
        h[12] = 6 << 4;
        assert!(Segment::parse(&h).is_none(), "options past the end");
    }

    #[test]
    fn only_syn_or_loose_ack_opens() {
        let cfg = Sysctls::default();
        assert!(TcpCt::new(&seg(1, 0, SYN | ACK, 0), &cfg).is_none());
        assert!(TcpCt::new(&seg(1, 0, RST, 0), &cfg).is_none());
        assert!(TcpCt::new(&seg(1, 0, FIN | ACK, 0), &cfg).is_none());
        let picked = TcpCt::new(&seg(1, 9, ACK, 0), &cfg).unwrap();
        assert_eq!(picked.flags, [F_SACK_PERM | F_BE_LIBERAL; 2]);
        let strict = Sysctls {
            tcp_loose: false,
            ..Default::default()
        };
        assert!(TcpCt::new(&seg(1, 9, ACK, 0), &strict).is_none());
    }

    #[test]
    fn full_life_handshake_data_close() {
        let mut c = handshake();
        // data both ways
        assert_eq!(
            c.pkt(0, &seg(C + 1, S + 1, ACK | PSH, 100)),
            Outcome::Accept(Some(300))
        );
        assert_eq!(
            c.pkt(1, &seg(S + 1, C + 101, ACK, 0)),
            Outcome::Accept(Some(432_000))
        );
        // client closes
        assert_eq!(
            c.pkt(0, &seg(C + 101, S + 1, FIN | ACK, 0)),
            Outcome::Accept(Some(120))
        );
        assert_eq!(c.t.state, TcpState::FinWait);
        assert_eq!(
            c.pkt(1, &seg(S + 1, C + 102, ACK, 0)),
            Outcome::Accept(Some(60))
        );
        assert_eq!(c.t.state, TcpState::CloseWait);
        assert_eq!(
            c.pkt(1, &seg(S + 1, C + 102, FIN | ACK, 0)),
            Outcome::Accept(Some(30))
        );
        assert_eq!(c.t.state, TcpState::LastAck);
        assert_eq!(
            c.pkt(0, &seg(C + 102, S + 2, ACK, 0)),
            Outcome::Accept(Some(120))
        );
        assert_eq!(c.t.state, TcpState::TimeWait);
    }

    #[test]
    fn simultaneous_open_goes_through_syn_sent2() {
        let mut c = Conn::open(&seg(C, 0, SYN, 0)).unwrap();
        assert!(matches!(c.pkt(1, &seg(S, 0, SYN, 0)), Outcome::Accept(_)));
        assert_eq!(c.t.state, TcpState::SynSent2);
        assert!(matches!(
            c.pkt(0, &seg(C, S + 1, SYN | ACK, 0)),
            Outcome::Accept(_)
        ));
        assert_eq!(c.t.state, TcpState::SynRecv);
        assert!(matches!(
            c.pkt(1, &seg(S + 1, C + 1, ACK, 0)),
            Outcome::Accept(_)
        ));
        assert_eq!(c.t.state, TcpState::Established);
    }

    #[test]
    fn rst_without_reply_kills_and_rst_in_established_closes() {
        let mut c = Conn::open(&seg(C, 0, SYN, 0)).unwrap();
        assert_eq!(c.pkt(1, &seg(0, C + 1, RST | ACK, 0)), Outcome::AcceptKill);
        let mut c = handshake();
        assert_eq!(c.pkt(1, &seg(S + 1, 0, RST, 0)), Outcome::Accept(Some(10)));
        assert_eq!(c.t.state, TcpState::Close);
    }

    #[test]
    fn rst_far_out_of_sequence_is_invalid_or_keeps_state() {
        let mut c = handshake();
        c.pkt(0, &seg(C + 1, S + 1, ACK | PSH, 100));
        c.pkt(1, &seg(S + 1, C + 101, ACK, 0));
        // Below what the peer acknowledged: invalid.
        assert_eq!(c.pkt(0, &seg(C + 50, 0, RST, 0)), Outcome::Invalid(None));
        assert_eq!(c.t.state, TcpState::Established);
        // In window but not the exact sequence: state kept for a challenge ACK.
        assert!(matches!(
            c.pkt(0, &seg(C + 200, 0, RST, 0)),
            Outcome::Accept(_)
        ));
        assert_eq!(c.t.state, TcpState::Established);
        // Exactly at the acknowledged sequence: closes.
        assert!(matches!(
            c.pkt(0, &seg(C + 101, 0, RST, 0)),
            Outcome::Accept(_)
        ));
        assert_eq!(c.t.state, TcpState::Close);
    }

    #[test]
    fn syn_after_close_reopens_and_retransmitted_syn_keeps_timeout() {
        let mut c = handshake();
        c.pkt(0, &seg(C + 1, S + 1, FIN | ACK, 0));
        c.pkt(1, &seg(S + 1, C + 2, FIN | ACK, 0));
        c.pkt(0, &seg(C + 2, S + 2, ACK, 0));
        assert_eq!(c.t.state, TcpState::TimeWait);
        assert_eq!(c.pkt(0, &seg(C + 90_000, 0, SYN, 0)), Outcome::Repeat);

        let mut c = Conn::open(&seg(C, 0, SYN, 0)).unwrap();
        assert_eq!(c.pkt(0, &seg(C, 0, SYN, 0)), Outcome::Accept(None));
    }

    #[test]
    fn window_checks_reject_data_beyond_the_window_unless_liberal() {
        let mut c = handshake();
        // Sequence far above what the receiver allows.
        assert_eq!(
            c.pkt(0, &seg(C + 10_000_000, S + 1, ACK, 10)),
            Outcome::Invalid(None)
        );
        // ACK for data never sent.
        assert_eq!(
            c.pkt(1, &seg(S + 1, C + 5_000_000, ACK, 0)),
            Outcome::Invalid(None)
        );
        // Old retransmission far below the window: ignored, not invalid.
        assert_eq!(
            c.pkt(0, &seg(C.wrapping_sub(200_000), S + 1, ACK, 10)),
            Outcome::Ignore
        );
        c.cfg.tcp_be_liberal = true;
        assert!(matches!(
            c.pkt(0, &seg(C + 10_000_000, S + 1, ACK, 10)),
            Outcome::Accept(_)
        ));
    }

    #[test]
    fn synack_ignored_in_established_and_stray_ack_in_syn_sent_ignored() {
        let mut c = handshake();
        assert_eq!(c.pkt(1, &seg(S, C + 1, SYN | ACK, 0)), Outcome::Ignore);
        assert_eq!(c.t.state, TcpState::Established);
        let mut c = Conn::open(&seg(C, 0, SYN, 0)).unwrap();
        assert_eq!(c.pkt(1, &seg(S, 77, ACK, 0)), Outcome::Ignore);
        assert_eq!(c.pkt(0, &seg(C, 0, SYN | ACK, 0)), Outcome::Invalid(None));
    }

    #[test]
    fn resync_on_synack_answering_an_ignored_syn() {
        let mut c = handshake();
        // The client restarts with a new ISN; we ignore the SYN in ESTABLISHED...
        assert_eq!(c.pkt(0, &seg(90_000, 0, SYN, 0)), Outcome::Ignore);
        // ...and the server's SYN/ACK for it puts us back in sync.
        assert!(matches!(
            c.pkt(1, &seg(70_000, 90_001, SYN | ACK, 0)),
            Outcome::Accept(_)
        ));
        assert_eq!(c.t.state, TcpState::SynRecv);
    }

    #[test]
    fn retransmissions_shorten_the_timeout() {
        let mut c = handshake();
        let s = seg(C + 1, S + 1, ACK, 0);
        for _ in 0..3 {
            c.pkt(0, &s);
        }
        assert_eq!(c.pkt(0, &s), Outcome::Accept(Some(300)));
    }

    #[test]
    fn options_set_window_scale_and_sack() {
        let opts = [2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0];
        let (mut s, mut f) = (0, 0);
        tcp_options(&opts, &mut s, &mut f);
        assert_eq!((s, f), (7, F_WINDOW_SCALE | F_SACK_PERM));
        let big = [3, 3, 20];
        tcp_options(&big, &mut s, &mut f);
        assert_eq!(s, 14);
        let mut sack = 100;
        tcp_sack(&[1, 1, 5, 10, 0, 0, 0, 50, 0, 0, 0, 200], &mut sack);
        assert_eq!(sack, 200);
    }
}
