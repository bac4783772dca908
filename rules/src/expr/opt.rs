//! Options and chunks found by walking a header: `tcp option maxseg size`, `sctp chunk init
//! num-inbound-streams`. `... exists` / `... missing` test presence.
//!
//! Adding an option or a field is adding a row to [`TCP_OPTS`] / [`SCTP_CHUNKS`].

use crate::types::Dtype;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    TcpOption,
    SctpChunk,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptField {
    pub name: &'static str,
    /// bit offset and length from the start of the option/chunk
    pub off: u16,
    pub len: u16,
    pub dtype: Dtype,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Opt {
    pub name: &'static str,
    /// input-only aliases (`sack0` = `sack`)
    pub alias: &'static str,
    pub kind: u8,
    pub fields: &'static [OptField],
}

const fn f(name: &'static str, off: u16, len: u16, dtype: Dtype) -> OptField {
    OptField {
        name,
        off,
        len,
        dtype,
    }
}
use Dtype::*;

const KL: [OptField; 2] = [f("kind", 0, 8, Integer(8)), f("length", 8, 8, Integer(8))];

pub static TCP_OPTS: &[Opt] = &[
    Opt {
        name: "eol",
        alias: "",
        kind: 0,
        fields: &[f("kind", 0, 8, Integer(8))],
    },
    Opt {
        name: "nop",
        alias: "",
        kind: 1,
        fields: &[f("kind", 0, 8, Integer(8))],
    },
    Opt {
        name: "maxseg",
        alias: "mss",
        kind: 2,
        fields: &[KL[0], KL[1], f("size", 16, 16, Integer(16))],
    },
    Opt {
        name: "window",
        alias: "",
        kind: 3,
        fields: &[KL[0], KL[1], f("count", 16, 8, Integer(8))],
    },
    Opt {
        name: "sack-perm",
        alias: "sack-permitted",
        kind: 4,
        fields: &KL,
    },
    Opt {
        name: "sack",
        alias: "sack0",
        kind: 5,
        fields: &[
            KL[0],
            KL[1],
            f("left", 16, 32, Integer(32)),
            f("right", 48, 32, Integer(32)),
        ],
    },
    Opt {
        name: "sack1",
        alias: "",
        kind: 5,
        fields: &[
            KL[0],
            KL[1],
            f("left", 80, 32, Integer(32)),
            f("right", 112, 32, Integer(32)),
        ],
    },
    Opt {
        name: "sack2",
        alias: "",
        kind: 5,
        fields: &[
            KL[0],
            KL[1],
            f("left", 144, 32, Integer(32)),
            f("right", 176, 32, Integer(32)),
        ],
    },
    Opt {
        name: "sack3",
        alias: "",
        kind: 5,
        fields: &[
            KL[0],
            KL[1],
            f("left", 208, 32, Integer(32)),
            f("right", 240, 32, Integer(32)),
        ],
    },
    Opt {
        name: "timestamp",
        alias: "",
        kind: 8,
        fields: &[
            KL[0],
            KL[1],
            f("tsval", 16, 32, Integer(32)),
            f("tsecr", 48, 32, Integer(32)),
        ],
    },
    Opt {
        name: "md5sig",
        alias: "",
        kind: 19,
        fields: &KL,
    },
    Opt {
        name: "mptcp",
        alias: "",
        kind: 30,
        fields: &[KL[0], KL[1], f("subtype", 16, 4, MptcpSubtype)],
    },
    Opt {
        name: "fastopen",
        alias: "",
        kind: 34,
        fields: &KL,
    },
];

const CH: [OptField; 3] = [
    f("type", 0, 8, Integer(8)),
    f("flags", 8, 8, Integer(8)),
    f("length", 16, 16, Integer(16)),
];

macro_rules! chunk {
    ($name:expr, $kind:expr) => {
        Opt { name: $name, alias: "", kind: $kind, fields: &CH }
    };
    ($name:expr, $kind:expr, $($extra:expr),+) => {
        Opt { name: $name, alias: "", kind: $kind, fields: &[CH[0], CH[1], CH[2], $($extra),+] }
    };
}

pub static SCTP_CHUNKS: &[Opt] = &[
    chunk!(
        "data",
        0,
        f("tsn", 32, 32, Integer(32)),
        f("stream", 64, 16, Integer(16)),
        f("ssn", 80, 16, Integer(16)),
        f("ppid", 96, 32, Integer(32))
    ),
    chunk!(
        "init",
        1,
        f("init-tag", 32, 32, Integer(32)),
        f("a-rwnd", 64, 32, Integer(32)),
        f("num-outbound-streams", 96, 16, Integer(16)),
        f("num-inbound-streams", 112, 16, Integer(16)),
        f("initial-tsn", 128, 32, Integer(32))
    ),
    chunk!(
        "init-ack",
        2,
        f("init-tag", 32, 32, Integer(32)),
        f("a-rwnd", 64, 32, Integer(32)),
        f("num-outbound-streams", 96, 16, Integer(16)),
        f("num-inbound-streams", 112, 16, Integer(16)),
        f("initial-tsn", 128, 32, Integer(32))
    ),
    chunk!(
        "sack",
        3,
        f("cum-tsn-ack", 32, 32, Integer(32)),
        f("a-rwnd", 64, 32, Integer(32)),
        f("num-gap-ack-blocks", 96, 16, Integer(16)),
        f("num-dup-tsns", 112, 16, Integer(16))
    ),
    chunk!("heartbeat", 4),
    chunk!("heartbeat-ack", 5),
    chunk!("abort", 6),
    chunk!("shutdown", 7, f("cum-tsn-ack", 32, 32, Integer(32))),
    chunk!("shutdown-ack", 8),
    chunk!("error", 9),
    chunk!("cookie-echo", 10),
    chunk!("cookie-ack", 11),
    chunk!("ecne", 12, f("lowest-tsn", 32, 32, Integer(32))),
    chunk!("cwr", 13, f("lowest-tsn", 32, 32, Integer(32))),
    chunk!("shutdown-complete", 14),
    chunk!("asconf-ack", 128, f("seqno", 32, 32, Integer(32))),
    chunk!("forward-tsn", 192, f("new-cum-tsn", 32, 32, Integer(32))),
    chunk!("asconf", 193, f("seqno", 32, 32, Integer(32))),
];

impl Space {
    pub fn table(self) -> &'static [Opt] {
        match self {
            Space::TcpOption => TCP_OPTS,
            Space::SctpChunk => SCTP_CHUNKS,
        }
    }
    pub fn prefix(self) -> &'static str {
        match self {
            Space::TcpOption => "tcp option",
            Space::SctpChunk => "sctp chunk",
        }
    }
    pub fn lookup(self, name: &str) -> Option<&'static Opt> {
        self.table()
            .iter()
            .find(|o| o.name == name || (!o.alias.is_empty() && o.alias == name))
    }
    /// An option named by number has no fields of its own beyond kind/length.
    pub fn by_kind(self, kind: u8) -> Option<&'static Opt> {
        self.table().iter().find(|o| o.kind == kind)
    }
}

/// Finds option/chunk `kind` in the packet: offset of its first byte.
pub fn find(space: Space, frame: &[u8], th: usize, kind: u8) -> Option<usize> {
    match space {
        Space::TcpOption => {
            let doff = (*frame.get(th.checked_add(12)?)? >> 4) as usize * 4;
            let end = th.checked_add(doff)?.min(frame.len());
            let mut i = th.checked_add(20)?;
            while i < end {
                let k = frame[i];
                if k == kind {
                    return Some(i);
                }
                match k {
                    0 => return None,
                    1 => i += 1,
                    _ => {
                        let l = *frame.get(i + 1)? as usize;
                        if l < 2 {
                            return None;
                        }
                        i += l;
                    }
                }
            }
            None
        }
        Space::SctpChunk => {
            let mut i = th.checked_add(12)?;
            for _ in 0..64 {
                let k = *frame.get(i)?;
                if k == kind {
                    return Some(i);
                }
                let l = u16::from_be_bytes([*frame.get(i + 2)?, *frame.get(i + 3)?]) as usize;
                if l < 4 {
                    return None;
                }
                i += (l + 3) & !3;
            }
            None
        }
    }
}
