//! Packet tracing: what the hooks did to a packet, recorded as the chain walker reports it.
//!
//! Two consumers: `meta nftrace set 1` on the live daemon (`sluice nft monitor trace`), which records only
//! traced packets and only the events the kernel reports, and `sluice replay`, which records every event
//! of every packet. Recording is off the fast path: with no consumer and no `nftrace` statement in the
//! ruleset, the hooks run with [`rules::eval::NoTrace`].

use rules::eval::{TraceEvent, Tracer};
use rules::{Hook, NfProto, PacketCtx};

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

/// The pipeline's trace state.
#[derive(Debug, Default)]
pub struct Trace {
    /// Record every event of every packet (replay).
    pub all: bool,
    /// The live ruleset can set `meta nftrace` (refreshed on generation switch).
    pub ruleset_traces: bool,
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
        self.all || self.ruleset_traces
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
