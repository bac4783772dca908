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
    Original,
    Reply,
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
    #[inline]
    pub fn read(&self, p: &PacketCtx<'_>, _dir: Option<Dir>, out: &mut [u8]) -> Option<usize> {
        let bytes = match self.name {
            "state" => p.ct_state.to_be_bytes(),
            "mark" => p.ct_mark.to_be_bytes(),
            _ => return None,
        };
        out.get_mut(..4)?.copy_from_slice(&bytes);
        Some(4)
    }
}
