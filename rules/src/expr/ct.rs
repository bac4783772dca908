//! Conntrack expressions (`ct state`, `ct mark`, `ct original saddr`, ...).
//!
//! Adding a key is adding a row to [`KEYS`] and, when the packet context carries it, an arm in
//! [`Key::read`].

use crate::eval::PacketCtx;
use crate::types::Dtype;

#[derive(Debug, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub dtype: Dtype,
    /// needs (and accepts) a direction: `ct original saddr`
    pub dir: DirRule,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirRule {
    Never,
    Optional,
    Required,
}

const fn k(name: &'static str, dtype: Dtype, dir: DirRule) -> Key {
    Key { name, dtype, dir }
}
use DirRule::*;
use Dtype::*;

pub static KEYS: &[Key] = &[
    k("state", CtState, Never),
    k("direction", CtDir, Never),
    k("status", CtStatus, Never),
    k("mark", Mark, Never),
    k("expiration", Time, Never),
    k("l3proto", NfProto, Optional),
    k("protocol", InetProto, Optional),
    k("saddr", Ipv4Addr, Required),
    k("daddr", Ipv4Addr, Required),
    k("proto-src", InetService, Required),
    k("proto-dst", InetService, Required),
    k("zone", Integer(16), Optional),
    k("id", Integer(32), Never),
    k("bytes", Integer(64), Optional),
    k("packets", Integer(64), Optional),
    k("avgpkt", Integer(64), Optional),
    k("secmark", Integer(32), Never),
    k("event", CtEvent, Never),
    k("helper", Str16, Never),
    k("label", CtLabel, Never),
    k("count", Integer(32), Never),
    k("timeout", Str16, Never),
    k("expectation", Str16, Never),
];

pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// `original` / `reply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Original = 0,
    Reply = 1,
}

impl Dir {
    pub fn name(self) -> &'static str {
        match self {
            Dir::Original => "original",
            Dir::Reply => "reply",
        }
    }
}

impl Key {
    /// Writes the key's value for packet `p` into `out` (`width` bytes: the compiled load's width);
    /// `None` when the packet has no conntrack entry (or the key is one sluice does not keep), and the
    /// match fails as the kernel's `nft_ct_get_eval` breaks.
    #[inline]
    pub fn read(
        &self,
        p: &PacketCtx<'_>,
        dir: Option<Dir>,
        width: u8,
        out: &mut [u8],
    ) -> Option<usize> {
        use crate::eval::ct_state::{INVALID, UNTRACKED};
        let mut put = |b: &[u8]| -> Option<usize> {
            out.get_mut(..b.len())?.copy_from_slice(b);
            Some(b.len())
        };
        match self.name {
            "state" => return put(&p.ct_state.to_be_bytes()),
            // read from the packet's own fields (the rules may set them); no entry, no value
            "mark" | "label" if p.ct_state & (INVALID | UNTRACKED) != 0 => return None,
            "mark" => return put(&p.ct_mark.to_be_bytes()),
            "label" => return put(&p.ct_label.to_be_bytes()),
            _ => {}
        }
        let v = p.ct_view?;
        let d = |x: Dir| x as usize;
        let sum = |a: [u64; 2]| match dir {
            Some(x) => a[d(x)],
            None => a[0] + a[1],
        };
        let t = dir.map(|x| &v.tuples[d(x)]);
        match self.name {
            "direction" => put(&[v.reply as u8]),
            "status" => put(&v.status.to_be_bytes()),
            "expiration" => put(&v.expiration_ms.to_be_bytes()),
            "l3proto" => put(&[v.l3proto]),
            "protocol" => put(&[v.protocol]),
            "saddr" => put(&t?.src[..width as usize]),
            "daddr" => put(&t?.dst[..width as usize]),
            "proto-src" => put(&t?.sport.to_be_bytes()),
            "proto-dst" => put(&t?.dport.to_be_bytes()),
            "zone" => put(&v.zone.to_be_bytes()),
            "bytes" => put(&sum(v.bytes).to_be_bytes()),
            "packets" => put(&sum(v.packets).to_be_bytes()),
            "avgpkt" => {
                let (b, n) = (sum(v.bytes), sum(v.packets));
                put(&b.checked_div(n).unwrap_or(0).to_be_bytes())
            }
            // id (a kernel hash), secmark, event, helper, timeout, expectation: not kept
            _ => None,
        }
    }
}
