//! Datatypes: how constants of each type are parsed from symbols and printed back.
//!
//! Values are big-endian byte strings of the type's width ([`Val`]). Adding a type means adding a
//! variant here and its symbol table.

use std::fmt::Write;

/// A constant of up to 32 bytes, big-endian (strings: NUL padded). 17 bytes: values of up to 16 bytes
/// (every type but object names) are stored inline; longer ones (object names, up to 32 bytes) are
/// interned (see [`long_val`]) and hold their index. Every AST constant is a `Val` (two in a range),
/// so its size is what 100,000-rule rulesets pay per constant.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Val {
    /// the width in bytes (read-only: constructors keep the representation)
    pub len: u8,
    b: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<Val>() == 17);

/// The interned bytes of values longer than 16 bytes (object names: few and short-lived in number, so
/// never freed), by index; equal bytes share an index, so `Val`'s derived equality and hash hold.
fn long_val(bytes: Option<&[u8; 32]>, idx: u32) -> (u32, &'static [u8; 32]) {
    use std::sync::{Mutex, OnceLock};
    type Table = (
        Vec<&'static [u8; 32]>,
        std::collections::HashMap<[u8; 32], u32>,
    );
    static LONG: OnceLock<Mutex<Table>> = OnceLock::new();
    let mut t = LONG
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match bytes {
        Some(b) => {
            if let Some(&i) = t.1.get(b) {
                return (i, t.0[i as usize]);
            }
            let i = t.0.len() as u32;
            let leaked: &'static [u8; 32] = Box::leak(Box::new(*b));
            t.0.push(leaked);
            t.1.insert(*b, i);
            (i, leaked)
        }
        None => (idx, t.0[idx as usize]),
    }
}

impl PartialOrd for Val {
    fn partial_cmp(&self, o: &Val) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Val {
    /// By width, then bytes.
    fn cmp(&self, o: &Val) -> std::cmp::Ordering {
        (self.len, self.bytes()).cmp(&(o.len, o.bytes()))
    }
}

impl std::fmt::Debug for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x")?;
        for x in self.bytes() {
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

impl Val {
    /// The first `len` bytes of `b` (zero beyond them).
    fn of(b: &[u8; 32], len: usize) -> Val {
        let len = len.min(32);
        let mut v = Val {
            len: len as u8,
            b: [0; 16],
        };
        if len <= 16 {
            v.b.copy_from_slice(&b[..16]);
            v.b[len..].fill(0);
        } else {
            let mut z = *b;
            z[len..].fill(0);
            let (i, _) = long_val(Some(&z), 0);
            v.b[..4].copy_from_slice(&i.to_be_bytes());
        }
        v
    }
    /// The value's bytes, zero-padded to 32.
    fn wide(&self) -> [u8; 32] {
        let mut b = [0; 32];
        b[..self.len as usize].copy_from_slice(self.bytes());
        b
    }
    pub fn from_bytes(bytes: &[u8]) -> Val {
        Val::padded(bytes, bytes.len())
    }
    /// `bytes` NUL-padded to `len` bytes (strings of a fixed width).
    pub fn padded(bytes: &[u8], len: usize) -> Val {
        if len <= 16 && bytes.len() <= 16 {
            // inline: no 32-byte round trip
            let mut b = [0; 16];
            let n = bytes.len().min(len);
            b[..n].copy_from_slice(&bytes[..n]);
            return Val { len: len as u8, b };
        }
        let mut b = [0; 32];
        b[..bytes.len()].copy_from_slice(bytes);
        Val::of(&b, len)
    }
    /// `v` as `len` big-endian bytes (truncated to the low `len` bytes; zero-extended past 16).
    pub fn from_u128(v: u128, len: usize) -> Val {
        if len <= 16 {
            // inline: the low `len` big-endian bytes, directly
            let mut b = [0; 16];
            b[..len].copy_from_slice(&v.to_be_bytes()[16 - len..]);
            return Val { len: len as u8, b };
        }
        let len = len.min(32);
        let mut b = [0u8; 32];
        let be = v.to_be_bytes();
        let n = len.min(16);
        b[len - n..len].copy_from_slice(&be[16 - n..]);
        Val::of(&b, len)
    }
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        if self.len <= 16 {
            &self.b[..self.len as usize]
        } else {
            let i = u32::from_be_bytes([self.b[0], self.b[1], self.b[2], self.b[3]]);
            &long_val(None, i).1[..self.len as usize]
        }
    }
    /// The first 16 bytes, zero-padded (IPv6 addresses).
    pub fn first16(&self) -> [u8; 16] {
        let mut b = [0; 16];
        let x = self.bytes();
        let n = x.len().min(16);
        b[..n].copy_from_slice(&x[..n]);
        b
    }
    pub fn to_u128(&self) -> u128 {
        if let 1..=16 = self.len {
            // inline, big-endian in the first `len` bytes (zero past them)
            return u128::from_be_bytes(self.b) >> (8 * (16 - self.len as u32));
        }
        self.bytes()
            .iter()
            .fold(0u128, |a, &x| (a << 8) | x as u128)
    }
    pub fn to_u64(&self) -> u64 {
        self.to_u128() as u64
    }
    /// Network prefix mask of `plen` bits in a value of this width.
    pub fn prefix_mask(len: usize, plen: u32) -> Val {
        if len <= 16 {
            // the first `plen` bits of the big-endian bytes: one shift
            let m = match plen.min(8 * len as u32) {
                0 => 0,
                n => u128::MAX << (128 - n),
            };
            let mut v = Val {
                len: len as u8,
                b: [0; 16],
            };
            v.b[..len].copy_from_slice(&m.to_be_bytes()[..len]);
            return v;
        }
        let mut b = [0; 32];
        for (i, x) in b.iter_mut().enumerate().take(len.min(32)) {
            let bits = (plen as i64 - 8 * i as i64).clamp(0, 8) as u32;
            *x = if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
        }
        Val::of(&b, len)
    }
    /// The lowest and highest values of the prefix of `plen` bits of this value (as
    /// `v & mask` and `v | !mask`).
    pub fn prefix_bounds(&self, plen: u32) -> (Val, Val) {
        let len = self.len as usize;
        if len > 16 {
            let m = Val::prefix_mask(len, plen);
            let lo = self.and(&m);
            return (lo, lo.or(&m.not()));
        }
        // big-endian in the first `len` bytes: the prefix is the top bits of the u128
        let x = u128::from_be_bytes(self.b);
        let mask = match plen.min(8 * len as u32) {
            0 => 0,
            n => u128::MAX << (128 - n),
        };
        let width = if len == 0 {
            0
        } else {
            u128::MAX << (128 - 8 * len as u32)
        };
        let lo = x & mask;
        let hi = (lo | !mask) & width;
        (
            Val {
                len: self.len,
                b: lo.to_be_bytes(),
            },
            Val {
                len: self.len,
                b: hi.to_be_bytes(),
            },
        )
    }
    /// Bytewise `f` of this value and `m` (zero-padded to this width).
    /// `f` over the bytes of both (byte-wise operations only: and, or, xor, not).
    fn zip(&self, m: &Val, f: impl Fn(u128, u128) -> u128) -> Val {
        if self.len <= 16 && m.len <= 16 {
            // both inline, zero past their widths: all bytes at once, then zero past the width again
            let keep = if self.len >= 16 {
                u128::MAX
            } else {
                (1u128 << (8 * self.len)) - 1
            };
            let x = f(u128::from_le_bytes(self.b), u128::from_le_bytes(m.b)) & keep;
            return Val {
                len: self.len,
                b: x.to_le_bytes(),
            };
        }
        let (mut a, b) = (self.wide(), m.wide());
        for (x, y) in a.iter_mut().zip(b).take(self.len as usize) {
            *x = f(*x as u128, y as u128) as u8;
        }
        Val::of(&a, self.len as usize)
    }
    pub fn and(&self, m: &Val) -> Val {
        self.zip(m, |x, y| x & y)
    }
    pub fn or(&self, m: &Val) -> Val {
        self.zip(m, |x, y| x | y)
    }
    pub fn xor(&self, m: &Val) -> Val {
        self.zip(m, |x, y| x ^ y)
    }
    pub fn not(&self) -> Val {
        self.zip(self, |x, _| !x)
    }
    pub fn is_zero(&self) -> bool {
        self.bytes().iter().all(|&x| x == 0)
    }
    /// The string stored in a NUL-padded value.
    pub fn as_str(&self) -> String {
        let bytes = self.bytes();
        let end = bytes.iter().position(|&x| x == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }
}

/// Kinds of stateful objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjKind {
    Counter,
    Quota,
    Limit,
    CtHelper,
    CtTimeout,
    CtExpectation,
    Synproxy,
    Secmark,
}

impl ObjKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjKind::Counter => "counter",
            ObjKind::Quota => "quota",
            ObjKind::Limit => "limit",
            ObjKind::CtHelper => "ct helper",
            ObjKind::CtTimeout => "ct timeout",
            ObjKind::CtExpectation => "ct expectation",
            ObjKind::Synproxy => "synproxy",
            ObjKind::Secmark => "secmark",
        }
    }
}

/// How a type prints and what its symbols mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// plain integer of `bits` bits (printed in decimal)
    Integer(u8),
    /// plain integer printed in hex (`0x%0Nx`)
    Hex(u8),
    Ipv4Addr,
    Ipv6Addr,
    EtherAddr,
    /// IP protocol number, symbolic (`tcp`)
    InetProto,
    /// port, parsed from service names, printed numerically
    InetService,
    /// packet mark, printed as 0x%08x
    Mark,
    /// interface name (16 bytes, NUL padded)
    Ifname,
    /// interface index, written and printed as a quoted name; kept as the name
    Iface,
    CtState,
    CtStatus,
    CtDir,
    IcmpType,
    IcmpCode,
    Icmpv6Type,
    Icmpv6Code,
    IcmpxCode,
    NfProto,
    TcpFlags,
    EtherType,
    PktType,
    Boolean,
    Dscp,
    Ecn,
    /// ARP opcode
    ArpOp,
    /// tc class id `major:minor` (`meta priority`), `root`, `none`
    Classid,
    /// interface group (`"default"` = 0)
    Devgroup,
    /// duration in milliseconds, printed `1d2h3m4s5ms`; bare numbers are seconds
    Time,
    /// ARPHRD_* interface type
    IfType,
    Uid,
    Gid,
    CtEvent,
    /// day of week, printed quoted (`"Saturday"`)
    Day,
    /// seconds since midnight, written and printed `"HH:MM[:SS]"`
    Hour,
    /// protocol number: accepts names, prints numbers
    ProtoNum,
    /// conntrack label bit
    CtLabel,
    /// NUL-padded string of 16 bytes, printed quoted (ct helper)
    Str16,
    MhType,
    IgmpType,
    DccpType,
    MptcpSubtype,
    /// a point in time (`meta time`), nanoseconds since the epoch; written and printed as
    /// `"YYYY-MM-DD HH:MM:SS"` (taken as UTC: this crate has no time zone)
    Date,
    /// route type from a fib lookup (`local`, `unicast`, ...)
    FibAddrType,
    /// the name of a stateful object of this kind (object maps), printed quoted
    Obj(ObjKind),
    /// 8-bit fragment-ish integers printed numerically, etc. use Integer
    Verdict,
}

pub struct Sym {
    pub name: &'static str,
    pub val: u64,
}
const fn s(name: &'static str, val: u64) -> Sym {
    Sym { name, val }
}

pub static PROTOCOLS: &[Sym] = &[
    s("hopopt", 0),
    s("icmp", 1),
    s("igmp", 2),
    s("ggp", 3),
    s("ipencap", 4),
    s("st", 5),
    s("tcp", 6),
    s("egp", 8),
    s("igp", 9),
    s("pup", 12),
    s("udp", 17),
    s("hmp", 20),
    s("xns-idp", 22),
    s("rdp", 27),
    s("iso-tp4", 29),
    s("dccp", 33),
    s("xtp", 36),
    s("ddp", 37),
    s("idpr-cmtp", 38),
    s("ipv6", 41),
    s("ipv6-route", 43),
    s("ipv6-frag", 44),
    s("idrp", 45),
    s("rsvp", 46),
    s("gre", 47),
    s("esp", 50),
    s("ah", 51),
    s("skip", 57),
    s("ipv6-icmp", 58),
    s("ipv6-nonxt", 59),
    s("ipv6-opts", 60),
    s("rspf", 73),
    s("vmtp", 81),
    s("eigrp", 88),
    s("ospf", 89),
    s("ax.25", 93),
    s("ipip", 94),
    s("etherip", 97),
    s("encap", 98),
    s("pim", 103),
    s("ipcomp", 108),
    s("vrrp", 112),
    s("l2tp", 115),
    s("isis", 124),
    s("sctp", 132),
    s("fc", 133),
    s("mobility-header", 135),
    s("udplite", 136),
    s("mpls-in-ip", 137),
    s("manet", 138),
    s("hip", 139),
    s("shim6", 140),
    s("wesp", 141),
    s("rohc", 142),
    s("ethernet", 143),
];
/// Aliases accepted on input only.
static PROTOCOL_ALIASES: &[Sym] = &[
    s("icmpv6", 58),
    s("comp", 108),
    s("ip", 0),
    s("ipv6-icmp", 58),
];

pub static SERVICES: &[Sym] = &[
    s("tcpmux", 1),
    s("echo", 7),
    s("discard", 9),
    s("systat", 11),
    s("daytime", 13),
    s("netstat", 15),
    s("chargen", 19),
    s("ftp-data", 20),
    s("ftp", 21),
    s("ssh", 22),
    s("telnet", 23),
    s("smtp", 25),
    s("time", 37),
    s("whois", 43),
    s("tacacs", 49),
    s("domain", 53),
    s("gopher", 70),
    s("finger", 79),
    s("http", 80),
    s("kerberos", 88),
    s("iso-tsap", 102),
    s("acr-nema", 104),
    s("pop3", 110),
    s("sunrpc", 111),
    s("auth", 113),
    s("nntp", 119),
    s("ntp", 123),
    s("epmap", 135),
    s("netbios-ns", 137),
    s("netbios-dgm", 138),
    s("netbios-ssn", 139),
    s("imap2", 143),
    s("snmp", 161),
    s("snmp-trap", 162),
    s("cmip-man", 163),
    s("cmip-agent", 164),
    s("mailq", 174),
    s("bgp", 179),
    s("irc", 194),
    s("smux", 199),
    s("qmtp", 209),
    s("z3950", 210),
    s("ipx", 213),
    s("ptp-event", 319),
    s("ptp-general", 320),
    s("pawserv", 345),
    s("zserv", 346),
    s("rpc2portmap", 369),
    s("codaauth2", 370),
    s("clearcase", 371),
    s("ldap", 389),
    s("svrloc", 427),
    s("https", 443),
    s("snpp", 444),
    s("microsoft-ds", 445),
    s("kpasswd", 464),
    s("submissions", 465),
    s("saft", 487),
    s("isakmp", 500),
    s("rtsp", 554),
    s("nqs", 607),
    s("asf-rmcp", 623),
    s("qmqp", 628),
    s("ipp", 631),
    s("ldp", 646),
    s("exec", 512),
    s("biff", 512),
    s("login", 513),
    s("who", 513),
    s("shell", 514),
    s("syslog", 514),
    s("printer", 515),
    s("talk", 517),
    s("ntalk", 518),
    s("route", 520),
    s("gdomap", 538),
    s("uucp", 540),
    s("klogin", 543),
    s("kshell", 544),
    s("dhcpv6-client", 546),
    s("dhcpv6-server", 547),
    s("afpovertcp", 548),
    s("nntps", 563),
    s("submission", 587),
    s("ldaps", 636),
    s("tinc", 655),
    s("silc", 706),
    s("kerberos-adm", 749),
    s("domain-s", 853),
    s("rsync", 873),
    s("ftps-data", 989),
    s("ftps", 990),
    s("telnets", 992),
    s("imaps", 993),
    s("pop3s", 995),
    s("socks", 1080),
    s("proofd", 1093),
    s("rootd", 1094),
    s("openvpn", 1194),
    s("rmiregistry", 1099),
    s("lotusnote", 1352),
    s("ms-sql-s", 1433),
    s("ms-sql-m", 1434),
    s("ingreslock", 1524),
    s("datametrics", 1645),
    s("sa-msg-port", 1646),
    s("kermit", 1649),
    s("groupwise", 1677),
    s("l2f", 1701),
    s("radius", 1812),
    s("radius-acct", 1813),
    s("cisco-sccp", 2000),
    s("nfs", 2049),
    s("gnunet", 2086),
    s("rtcm-sc104", 2101),
    s("gsigatekeeper", 2119),
    s("gris", 2135),
    s("cvspserver", 2401),
    s("venus", 2430),
    s("venus-se", 2431),
    s("codasrv", 2432),
    s("codasrv-se", 2433),
    s("mon", 2583),
    s("dict", 2628),
    s("f5-globalsite", 2792),
    s("gsiftp", 2811),
    s("gpsd", 2947),
    s("gds-db", 3050),
    s("icpv2", 3130),
    s("isns", 3205),
    s("iscsi-target", 3260),
    s("mysql", 3306),
    s("ms-wbt-server", 3389),
    s("nut", 3493),
    s("distcc", 3632),
    s("daap", 3689),
    s("svn", 3690),
    s("suucp", 4031),
    s("sysrqd", 4094),
    s("sieve", 4190),
    s("epmd", 4369),
    s("remctl", 4373),
    s("f5-iquery", 4353),
    s("ntske", 4460),
    s("ipsec-nat-t", 4500),
    s("iax", 4569),
    s("mtn", 4691),
    s("radmin-port", 4899),
    s("sip", 5060),
    s("sip-tls", 5061),
    s("xmpp-client", 5222),
    s("xmpp-server", 5269),
    s("cfengine", 5308),
    s("mdns", 5353),
    s("postgresql", 5432),
    s("freeciv", 5556),
    s("amqps", 5671),
    s("amqp", 5672),
    s("x11", 6000),
    s("x11-1", 6001),
    s("x11-2", 6002),
    s("x11-3", 6003),
    s("x11-4", 6004),
    s("x11-5", 6005),
    s("x11-6", 6006),
    s("x11-7", 6007),
    s("gnutella-svc", 6346),
    s("gnutella-rtr", 6347),
    s("redis", 6379),
    s("sge-qmaster", 6444),
    s("sge-execd", 6445),
    s("mysql-proxy", 6446),
    s("babel", 6696),
    s("ircs-u", 6697),
    s("bbs", 7000),
    s("afs3-fileserver", 7000),
    s("afs3-callback", 7001),
    s("afs3-prserver", 7002),
    s("afs3-vlserver", 7003),
    s("afs3-kaserver", 7004),
    s("afs3-volser", 7005),
    s("afs3-bos", 7007),
    s("afs3-update", 7008),
    s("afs3-rmtsys", 7009),
    s("font-service", 7100),
    s("http-alt", 8080),
    s("puppet", 8140),
    s("bacula-dir", 9101),
    s("bacula-fd", 9102),
    s("bacula-sd", 9103),
    s("xmms2", 9667),
    s("nbd", 10809),
    s("zabbix-agent", 10050),
    s("zabbix-trapper", 10051),
    s("amanda", 10080),
    s("dicom", 11112),
    s("hkp", 11371),
    s("db-lsp", 17500),
    s("dcap", 22125),
    s("gsidcap", 22128),
    s("wnn6", 22273),
    s("bootps", 67),
    s("bootpc", 68),
    s("tftp", 69),
    s("netbios", 137),
    s("xdmcp", 177),
    s("www", 80),
    s("nameserver", 42),
    s("rtmp", 1),
];

pub static ICMP_TYPES: &[Sym] = &[
    s("echo-reply", 0),
    s("destination-unreachable", 3),
    s("source-quench", 4),
    s("redirect", 5),
    s("echo-request", 8),
    s("router-advertisement", 9),
    s("router-solicitation", 10),
    s("time-exceeded", 11),
    s("parameter-problem", 12),
    s("timestamp-request", 13),
    s("timestamp-reply", 14),
    s("info-request", 15),
    s("info-reply", 16),
    s("address-mask-request", 17),
    s("address-mask-reply", 18),
];

pub static ICMP_CODES: &[Sym] = &[
    s("net-unreachable", 0),
    s("host-unreachable", 1),
    s("prot-unreachable", 2),
    s("port-unreachable", 3),
    s("frag-needed", 4),
    s("net-prohibited", 9),
    s("host-prohibited", 10),
    s("admin-prohibited", 13),
];

pub static ICMPV6_TYPES: &[Sym] = &[
    s("destination-unreachable", 1),
    s("packet-too-big", 2),
    s("time-exceeded", 3),
    s("parameter-problem", 4),
    s("echo-request", 128),
    s("echo-reply", 129),
    s("mld-listener-query", 130),
    s("mld-listener-report", 131),
    s("mld-listener-done", 132),
    s("mld-listener-reduction", 132),
    s("nd-router-solicit", 133),
    s("nd-router-advert", 134),
    s("nd-neighbor-solicit", 135),
    s("nd-neighbor-advert", 136),
    s("nd-redirect", 137),
    s("router-renumbering", 138),
    s("ind-neighbor-solicit", 141),
    s("ind-neighbor-advert", 142),
    s("mld2-listener-report", 143),
];

pub static ICMPV6_CODES: &[Sym] = &[
    s("no-route", 0),
    s("admin-prohibited", 1),
    s("addr-unreachable", 3),
    s("port-unreachable", 4),
    s("policy-fail", 5),
    s("reject-route", 6),
];

pub static ICMPX_CODES: &[Sym] = &[
    s("no-route", 0),
    s("port-unreachable", 1),
    s("host-unreachable", 2),
    s("admin-prohibited", 3),
];

pub static CT_STATES: &[Sym] = &[
    s("invalid", 1),
    s("established", 2),
    s("related", 4),
    s("new", 8),
    s("untracked", 64),
];

pub static CT_STATUS: &[Sym] = &[
    s("expected", 1),
    s("seen-reply", 2),
    s("assured", 4),
    s("confirmed", 8),
    s("snat", 16),
    s("dnat", 32),
    s("dying", 512),
];

pub static CT_DIRS: &[Sym] = &[s("original", 0), s("reply", 1)];

pub static NFPROTOS: &[Sym] = &[s("ipv4", 2), s("ipv6", 10)];

pub static TCP_FLAGS: &[Sym] = &[
    s("fin", 0x01),
    s("syn", 0x02),
    s("rst", 0x04),
    s("psh", 0x08),
    s("ack", 0x10),
    s("urg", 0x20),
    s("ecn", 0x40),
    s("cwr", 0x80),
];

pub static ETHER_TYPES: &[Sym] = &[
    s("ip", 0x0800),
    s("arp", 0x0806),
    s("ip6", 0x86dd),
    s("8021q", 0x8100),
    s("8021ad", 0x88a8),
    s("vlan", 0x8100),
];

pub static PKT_TYPES: &[Sym] = &[
    s("host", 0),
    s("broadcast", 1),
    s("multicast", 2),
    s("other", 3),
];

pub static BOOLEANS: &[Sym] = &[s("exists", 1), s("missing", 0), s("true", 1), s("false", 0)];

pub static DSCPS: &[Sym] = &[
    s("cs0", 0x00),
    s("cs1", 0x08),
    s("cs2", 0x10),
    s("cs3", 0x18),
    s("cs4", 0x20),
    s("cs5", 0x28),
    s("cs6", 0x30),
    s("cs7", 0x38),
    s("df", 0x00),
    s("be", 0x00),
    s("lephb", 0x01),
    s("af11", 0x0a),
    s("af12", 0x0c),
    s("af13", 0x0e),
    s("af21", 0x12),
    s("af22", 0x14),
    s("af23", 0x16),
    s("af31", 0x1a),
    s("af32", 0x1c),
    s("af33", 0x1e),
    s("af41", 0x22),
    s("af42", 0x24),
    s("af43", 0x26),
    s("va", 0x2c),
    s("ef", 0x2e),
];

pub static ECNS: &[Sym] = &[s("not-ect", 0), s("ect1", 1), s("ect0", 2), s("ce", 3)];

pub static MH_TYPES: &[Sym] = &[
    s("binding-refresh-request", 0),
    s("home-test-init", 1),
    s("careof-test-init", 2),
    s("home-test", 3),
    s("careof-test", 4),
    s("binding-update", 5),
    s("binding-acknowledgement", 6),
    s("binding-error", 7),
    s("fast-binding-update", 8),
    s("fast-binding-acknowledgement", 9),
    s("fast-binding-advertisement", 10),
    s("experimental-mobility-header", 11),
    s("home-agent-switch-message", 12),
];

pub static IGMP_TYPES: &[Sym] = &[
    s("membership-query", 0x11),
    s("membership-report-v1", 0x12),
    s("membership-report-v2", 0x16),
    s("membership-report-v3", 0x22),
    s("leave-group", 0x17),
];

pub static DCCP_TYPES: &[Sym] = &[
    s("request", 0),
    s("response", 1),
    s("data", 2),
    s("ack", 3),
    s("dataack", 4),
    s("closereq", 5),
    s("close", 6),
    s("reset", 7),
    s("sync", 8),
    s("syncack", 9),
];

pub static MPTCP_SUBTYPES: &[Sym] = &[
    s("mp-capable", 0),
    s("mp-join", 1),
    s("dss", 2),
    s("add-addr", 3),
    s("remove-addr", 4),
    s("mp-prio", 5),
    s("mp-fail", 6),
    s("mp-fastclose", 7),
    s("mp-tcprst", 8),
];

pub static FIB_ADDR_TYPES: &[Sym] = &[
    s("unspec", 0),
    s("unicast", 1),
    s("local", 2),
    s("broadcast", 3),
    s("anycast", 4),
    s("multicast", 5),
    s("blackhole", 6),
    s("unreachable", 7),
    s("prohibit", 8),
    s("throw", 9),
    s("nat", 10),
    s("xresolve", 11),
];

pub static IF_TYPES: &[Sym] = &[
    s("ether", 1),
    s("ppp", 512),
    s("ipip", 768),
    s("ipip6", 769),
    s("loopback", 772),
    s("sit", 776),
    s("ipgre", 778),
];

pub static CT_EVENTS: &[Sym] = &[
    s("new", 1),
    s("related", 2),
    s("destroy", 4),
    s("reply", 8),
    s("assured", 16),
    s("protoinfo", 32),
    s("helper", 64),
    s("mark", 128),
    s("seqadj", 256),
    s("secmark", 512),
    s("label", 1024),
];

/// A minimal passwd/group: the accounts every Linux system has.
pub static USERS: &[Sym] = &[
    s("root", 0),
    s("daemon", 1),
    s("bin", 2),
    s("sys", 3),
    s("nobody", 65534),
];
pub static GROUPS: &[Sym] = &[
    s("root", 0),
    s("daemon", 1),
    s("bin", 2),
    s("sys", 3),
    s("nogroup", 65534),
];

pub static DAYS: &[&str] = &[
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

pub static ARP_OPS: &[Sym] = &[
    s("request", 1),
    s("reply", 2),
    s("rrequest", 3),
    s("rreply", 4),
    s("inrequest", 8),
    s("inreply", 9),
    s("nak", 10),
];

pub fn lookup(table: &[Sym], name: &str) -> Option<u64> {
    table.iter().find(|x| x.name == name).map(|x| x.val)
}
pub fn rlookup(table: &[Sym], v: u64) -> Option<&'static str> {
    table.iter().find(|x| x.val == v).map(|x| x.name)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `YYYY-MM-DD[ HH:MM[:SS]]` → seconds since the epoch (UTC).
pub fn parse_date(s: &str) -> Option<i64> {
    let (date, time) = s.split_once(' ').unwrap_or((s, "00:00:00"));
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [y, mo, da] = d[..] else { return None };
    let (h, mi, se) = match t[..] {
        [h, mi] => (h, mi, 0),
        [h, mi, se] => (h, mi, se),
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, da) * 86400 + h * 3600 + mi * 60 + se)
}

/// Seconds since the epoch → `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn print_date(secs: i64, out: &mut String) {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

/// `1d2h3m4s5ms` → milliseconds.
pub fn parse_time(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    let mut any = false;
    while i < b.len() {
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if st == i {
            return None;
        }
        let n: u64 = s[st..i].parse().ok()?;
        let us = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult = match &s[us..i] {
            "d" => 86_400_000,
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1000,
            "ms" => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
        any = true;
    }
    any.then_some(total)
}

/// nft's `time_print`: `1d2h3m4s5ms`, `0s` for zero... (nft prints nothing-units as `0s`? it prints "0s")
pub fn print_time(ms: u64, out: &mut String) {
    let (d, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (h, rest) = (rest / 3_600_000, rest % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (sec, msec) = (rest / 1000, rest % 1000);
    let start = out.len();
    if d > 0 {
        let _ = write!(out, "{d}d");
    }
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if sec > 0 {
        let _ = write!(out, "{sec}s");
    }
    if msec > 0 {
        let _ = write!(out, "{msec}ms");
    }
    if out.len() == start {
        out.push_str("0s");
    }
}

/// IPv6 text like glibc's `inet_ntop` (which nft uses): longest run of zero groups (length >= 2,
/// first wins) becomes `::`, and `::a.b.c.d` / `::ffff:a.b.c.d` keep the IPv4 tail.
pub fn print_ipv6(b: &[u8; 16], out: &mut String) {
    let w: Vec<u16> = (0..8)
        .map(|i| u16::from_be_bytes([b[2 * i], b[2 * i + 1]]))
        .collect();
    let (mut best, mut best_len) = (usize::MAX, 0);
    let mut i = 0;
    while i < 8 {
        if w[i] == 0 {
            let st = i;
            while i < 8 && w[i] == 0 {
                i += 1;
            }
            if i - st > best_len {
                best = st;
                best_len = i - st;
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best = usize::MAX;
    }
    let mut i = 0;
    while i < 8 {
        if i == best {
            out.push(':');
            if i == 0 {
                out.push(':');
            }
            i += best_len;
            if i == 8 {
                return;
            }
            continue;
        }
        if i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)) {
            let _ = write!(out, "{}.{}.{}.{}", b[12], b[13], b[14], b[15]);
            return;
        }
        let _ = write!(out, "{:x}", w[i]);
        if i < 7 {
            out.push(':');
        }
        i += 1;
    }
}

/// Parses a decimal or 0x hex number.
/// `a.b.c.d` of four decimal numbers up to 255 without leading zeros (what `Ipv4Addr`'s parser accepts,
/// faster); `None` for anything else (left to that parser).
fn dotted_quad(s: &str) -> Option<[u8; 4]> {
    let b = s.as_bytes();
    let mut out = [0u8; 4];
    let mut i = 0;
    for (k, o) in out.iter_mut().enumerate() {
        if k > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v = 0u32;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            if i - start == 3 {
                return None;
            }
            v = v * 10 + (d - b'0') as u32;
            i += 1;
        }
        if i == start || (i - start > 1 && b[start] == b'0') || v > 255 {
            return None;
        }
        *o = v as u8;
    }
    (i == b.len()).then_some(out)
}

#[inline]
pub fn parse_number(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= 19 {
        // the usual short decimal: one pass, no overflow checks (fits a u64)
        let mut v = 0u64;
        let mut digits = true;
        for &c in b {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                digits = false;
                break;
            }
            v = v * 10 + d as u64;
        }
        if digits {
            return Some(v as u128);
        }
    }
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u128::from_str_radix(h, 16).ok()
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        if s.len() <= 19 {
            // fits a u64: no overflow checks on 128 bits
            Some(s.bytes().fold(0u64, |a, b| a * 10 + (b - b'0') as u64) as u128)
        } else {
            s.parse().ok()
        }
    } else {
        None
    }
}

/// Print options the datatypes care about.
#[derive(Clone, Copy, Debug, Default)]
pub struct ValFmt {
    pub numeric_proto: bool,
    pub numeric_symbols: bool,
}

impl Dtype {
    /// nft's name for the type (as in `type ipv4_addr` of a set).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Integer(_) | Dtype::Hex(_) => "integer",
            Dtype::Ipv4Addr => "ipv4_addr",
            Dtype::Ipv6Addr => "ipv6_addr",
            Dtype::EtherAddr => "ether_addr",
            Dtype::InetProto => "inet_proto",
            Dtype::InetService => "inet_service",
            Dtype::Mark => "mark",
            Dtype::Ifname => "ifname",
            Dtype::Iface => "iface_index",
            Dtype::CtState => "ct_state",
            Dtype::CtStatus => "ct_status",
            Dtype::CtDir => "ct_dir",
            Dtype::IcmpType => "icmp_type",
            Dtype::IcmpCode => "icmp_code",
            Dtype::Icmpv6Type => "icmpv6_type",
            Dtype::Icmpv6Code => "icmpv6_code",
            Dtype::IcmpxCode => "icmpx_code",
            Dtype::NfProto => "nf_proto",
            Dtype::TcpFlags => "tcp_flag",
            Dtype::EtherType => "ether_type",
            Dtype::PktType => "pkt_type",
            Dtype::Boolean => "boolean",
            Dtype::Dscp => "dscp",
            Dtype::Ecn => "ecn",
            Dtype::ArpOp => "arp_op",
            Dtype::Verdict => "verdict",
            Dtype::Classid => "classid",
            Dtype::Devgroup => "devgroup",
            Dtype::Time => "time",
            Dtype::IfType => "iface_type",
            Dtype::Uid => "uid",
            Dtype::Gid => "gid",
            Dtype::CtEvent => "ct_event",
            Dtype::Day => "day",
            Dtype::Hour => "hour",
            Dtype::ProtoNum => "integer",
            Dtype::CtLabel => "ct_label",
            Dtype::Str16 => "string",
            Dtype::MhType => "mh_type",
            Dtype::IgmpType => "igmp_type",
            Dtype::DccpType => "dccp_pkttype",
            Dtype::MptcpSubtype => "mptcpopt_subtype",
            Dtype::Obj(k) => k.name(),
            Dtype::FibAddrType => "fib_addrtype",
            Dtype::Date => "time",
        }
    }

    /// Looks a set/map `type` name up.
    pub fn by_name(name: &str) -> Option<Dtype> {
        Some(match name {
            "ipv4_addr" => Dtype::Ipv4Addr,
            "ipv6_addr" => Dtype::Ipv6Addr,
            "ether_addr" => Dtype::EtherAddr,
            "inet_proto" => Dtype::InetProto,
            "inet_service" => Dtype::InetService,
            "mark" => Dtype::Mark,
            "ifname" => Dtype::Ifname,
            "iface_index" => Dtype::Iface,
            "ct_state" => Dtype::CtState,
            "ct_status" => Dtype::CtStatus,
            "ct_dir" => Dtype::CtDir,
            "icmp_type" => Dtype::IcmpType,
            "icmp_code" => Dtype::IcmpCode,
            "icmpv6_type" => Dtype::Icmpv6Type,
            "icmpv6_code" => Dtype::Icmpv6Code,
            "icmpx_code" => Dtype::IcmpxCode,
            "nf_proto" => Dtype::NfProto,
            "tcp_flag" => Dtype::TcpFlags,
            "ether_type" => Dtype::EtherType,
            "pkt_type" => Dtype::PktType,
            "boolean" => Dtype::Boolean,
            "dscp" => Dtype::Dscp,
            "ecn" => Dtype::Ecn,
            "arp_op" => Dtype::ArpOp,
            "verdict" => Dtype::Verdict,
            "integer" => Dtype::Integer(32),
            "classid" => Dtype::Classid,
            "devgroup" => Dtype::Devgroup,
            "time" => Dtype::Time,
            "iface_type" => Dtype::IfType,
            "ct_event" => Dtype::CtEvent,
            "ct_label" => Dtype::CtLabel,
            "counter" => Dtype::Obj(ObjKind::Counter),
            "quota" => Dtype::Obj(ObjKind::Quota),
            "limit" => Dtype::Obj(ObjKind::Limit),
            "synproxy" => Dtype::Obj(ObjKind::Synproxy),
            "secmark" => Dtype::Obj(ObjKind::Secmark),
            "uid" => Dtype::Uid,
            "gid" => Dtype::Gid,
            _ => return None,
        })
    }

    /// Width in bits.
    pub fn bits(self) -> u32 {
        match self {
            Dtype::Integer(b) | Dtype::Hex(b) => b as u32,
            Dtype::Ipv4Addr => 32,
            Dtype::Ipv6Addr => 128,
            Dtype::EtherAddr => 48,
            Dtype::InetProto => 8,
            Dtype::InetService => 16,
            Dtype::Mark => 32,
            Dtype::Ifname => 128,
            Dtype::Iface => 32,
            Dtype::CtState | Dtype::CtStatus => 32,
            Dtype::CtDir => 8,
            Dtype::IcmpType
            | Dtype::IcmpCode
            | Dtype::Icmpv6Type
            | Dtype::Icmpv6Code
            | Dtype::IcmpxCode => 8,
            Dtype::NfProto => 8,
            Dtype::TcpFlags => 8,
            Dtype::EtherType => 16,
            Dtype::PktType => 8,
            Dtype::Boolean => 1,
            Dtype::Dscp => 6,
            Dtype::Ecn => 2,
            Dtype::ArpOp => 16,
            Dtype::Verdict => 32,
            Dtype::Classid | Dtype::Devgroup | Dtype::Time => 32,
            Dtype::IfType => 16,
            Dtype::Uid | Dtype::Gid => 32,
            Dtype::CtEvent => 32,
            Dtype::Day => 8,
            Dtype::Hour => 32,
            Dtype::ProtoNum => 8,
            Dtype::CtLabel => 7,
            Dtype::Str16 => 128,
            Dtype::MhType | Dtype::IgmpType => 8,
            Dtype::DccpType => 4,
            Dtype::MptcpSubtype => 4,
            Dtype::Obj(_) => 256,
            Dtype::FibAddrType => 32,
            Dtype::Date => 64,
        }
    }

    /// Width of a stored value in bytes.
    pub fn bytes(self) -> usize {
        (self.bits() as usize).div_ceil(8)
    }

    /// Is this a bit-flag type (implicit match = "any of these bits set", comma lists OR together)?
    pub fn is_bitmask(self) -> bool {
        matches!(
            self,
            Dtype::CtState | Dtype::CtStatus | Dtype::TcpFlags | Dtype::CtEvent
        )
    }

    /// Is this an address/prefix-able type?
    /// The mask of a `/plen` prefix of this type in a `len`-byte value: the top `plen` of the type's
    /// bits (`ip dscp 1/6` masks with 0x3f, not 0xfc).
    pub fn prefix_mask(self, len: usize, plen: u32) -> Val {
        let bits = (self.bits() as usize).min(len * 8);
        if bits == len * 8 || bits >= 128 {
            return Val::prefix_mask(len, plen);
        }
        let all = (1u128 << bits) - 1;
        let low = if plen as usize >= bits {
            0
        } else {
            (1u128 << (bits - plen as usize)) - 1
        };
        Val::from_u128(all & !low, len)
    }

    pub fn is_addr(self) -> bool {
        matches!(self, Dtype::Ipv4Addr | Dtype::Ipv6Addr)
    }

    /// Does the printer put 2 elements per line in a named set of this type (vs 5 for integers)?
    pub fn set_elems_per_line(self) -> usize {
        match self {
            Dtype::Ipv4Addr | Dtype::CtState | Dtype::CtStatus | Dtype::PktType => 2,
            Dtype::NfProto
            | Dtype::Integer(_)
            | Dtype::Hex(_)
            | Dtype::ArpOp
            | Dtype::InetProto
            | Dtype::ProtoNum
            | Dtype::InetService
            | Dtype::TcpFlags
            | Dtype::DccpType
            | Dtype::Mark
            | Dtype::Iface
            | Dtype::Classid
            | Dtype::Uid
            | Dtype::Gid
            | Dtype::CtDir => 5,
            _ => 1,
        }
    }

    fn symbols(self) -> Option<&'static [Sym]> {
        Some(match self {
            Dtype::InetProto | Dtype::ProtoNum => PROTOCOLS,
            Dtype::IfType => IF_TYPES,
            Dtype::FibAddrType => FIB_ADDR_TYPES,
            Dtype::MhType => MH_TYPES,
            Dtype::IgmpType => IGMP_TYPES,
            Dtype::DccpType => DCCP_TYPES,
            Dtype::MptcpSubtype => MPTCP_SUBTYPES,
            Dtype::CtEvent => CT_EVENTS,
            Dtype::Uid => USERS,
            Dtype::Gid => GROUPS,
            Dtype::CtState => CT_STATES,
            Dtype::CtStatus => CT_STATUS,
            Dtype::CtDir => CT_DIRS,
            Dtype::IcmpType => ICMP_TYPES,
            Dtype::IcmpCode => ICMP_CODES,
            Dtype::Icmpv6Type => ICMPV6_TYPES,
            Dtype::Icmpv6Code => ICMPV6_CODES,
            Dtype::IcmpxCode => ICMPX_CODES,
            Dtype::NfProto => NFPROTOS,
            Dtype::TcpFlags => TCP_FLAGS,
            Dtype::EtherType => ETHER_TYPES,
            Dtype::PktType => PKT_TYPES,
            Dtype::Boolean => BOOLEANS,
            Dtype::Dscp => DSCPS,
            Dtype::Ecn => ECNS,
            Dtype::ArpOp => ARP_OPS,
            _ => return None,
        })
    }

    /// [`Dtype::parse`]'s result for the usual literals, when it is a value: a dotted-quad IPv4
    /// address, a decimal number in range of a type that takes numbers as they are; `None` for
    /// anything else (left to `parse`). Quoted or not makes no difference to these.
    #[inline]
    pub fn parse_fast(self, text: &str) -> Option<Val> {
        if self == Dtype::Ipv4Addr {
            if let Some(a) = dotted_quad(text) {
                return Some(Val::from_bytes(&a));
            }
        }
        // the types whose `parse` does something else with a number (as `parse` has them)
        if matches!(
            self,
            Dtype::Ipv6Addr
                | Dtype::EtherAddr
                | Dtype::Ifname
                | Dtype::Iface
                | Dtype::Verdict
                | Dtype::Date
                | Dtype::Day
                | Dtype::Hour
                | Dtype::Obj(_)
                | Dtype::Str16
                | Dtype::Time
        ) {
            return None;
        }
        let b = text.as_bytes();
        if b.is_empty() || b.len() > 19 {
            return None;
        }
        let mut v = 0u64;
        for &c in b {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + d as u64;
        }
        let bits = self.bits();
        if bits < 64 && v >> bits != 0 {
            return None;
        }
        Some(Val::from_u128(v as u128, self.bytes()))
    }

    /// Parses one symbol or literal (`tcp`, `22`, `192.0.2.1`, `"eth0"` without quotes) of this type.
    /// `quoted` says the source had quotes. Errors are nft's messages.
    pub fn parse(self, text: &str, quoted: bool) -> Result<Val, String> {
        let nbytes = self.bytes();
        let int = |v: u128| -> Result<Val, String> {
            let bits = self.bits();
            let max: u128 = if bits >= 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            };
            if v > max && self == Dtype::InetService {
                return Err("Service out of range".to_string());
            }
            if v > max {
                return Err(format!("Value {v} exceeds valid range 0-{max}"));
            }
            Ok(Val::from_u128(v, nbytes))
        };
        match self {
            Dtype::Ipv4Addr => {
                // the usual dotted quad first (never a number: it has dots)
                if let Some(a) = dotted_quad(text) {
                    return Ok(Val::from_bytes(&a));
                }
                match parse_number(text) {
                    // integers are addresses too (`ip saddr & 0xff == 1`)
                    Some(n) => int(n),
                    None => text
                        .parse::<std::net::Ipv4Addr>()
                        .map(|a| Val::from_bytes(&a.octets()))
                        .map_err(|_| {
                            "Could not resolve hostname: Name or service not known".to_string()
                        }),
                }
            }
            Dtype::Ipv6Addr => {
                let t = text
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .unwrap_or(text);
                t.parse::<std::net::Ipv6Addr>()
                    .map(|a| Val::from_bytes(&a.octets()))
                    .map_err(|_| {
                        "Could not resolve hostname: Name or service not known".to_string()
                    })
            }
            Dtype::EtherAddr => {
                let parts: Vec<&str> = text.split(':').collect();
                if parts.len() != 6 {
                    return Err("Could not parse ether_addr".to_string());
                }
                let mut b = [0u8; 6];
                for (i, p) in parts.iter().enumerate() {
                    b[i] = u8::from_str_radix(p, 16)
                        .map_err(|_| "Could not parse ether_addr".to_string())?;
                }
                Ok(Val::from_bytes(&b))
            }
            Dtype::Ifname => {
                if text.is_empty() {
                    return Err("Empty string is not allowed".to_string());
                }
                if text.len() >= 16 {
                    return Err("String exceeds maximum length of 15".to_string());
                }
                Ok(Val::padded(text.as_bytes(), 16))
            }
            Dtype::Iface => {
                // kept as the name; resolved by the caller (see compile)
                Ok(Val::padded(&text.as_bytes()[..text.len().min(16)], 16))
            }
            Dtype::InetService => {
                if let Some(n) = parse_number(text) {
                    return int(n);
                }
                if quoted {
                    return Err(
                        "Could not resolve service: Servname not supported for ai_socktype"
                            .to_string(),
                    );
                }
                match lookup(SERVICES, text) {
                    Some(v) => int(v as u128),
                    None => Err(
                        "Could not resolve service: Servname not supported for ai_socktype"
                            .to_string(),
                    ),
                }
            }
            Dtype::InetProto | Dtype::ProtoNum => {
                if let Some(n) = parse_number(text) {
                    return int(n);
                }
                match lookup(PROTOCOLS, text).or_else(|| lookup(PROTOCOL_ALIASES, text)) {
                    Some(v) => int(v as u128),
                    None => Err("Could not resolve protocol name".to_string()),
                }
            }
            Dtype::Verdict => Err("Could not parse verdict".into()),
            Dtype::Classid => {
                let v: u128 = match text {
                    "root" => 0xffff_ffff,
                    "none" => 0,
                    _ => match text.split_once(':') {
                        Some((a, b)) => {
                            let a = u32::from_str_radix(a, 16)
                                .map_err(|_| "Could not parse classid".to_string())?;
                            let b = u32::from_str_radix(b, 16)
                                .map_err(|_| "Could not parse classid".to_string())?;
                            if a > 0xffff || b > 0xffff {
                                return Err("Could not parse classid".into());
                            }
                            ((a << 16) | b) as u128
                        }
                        None => parse_number(text)
                            .ok_or_else(|| "Could not parse classid".to_string())?,
                    },
                };
                int(v)
            }
            Dtype::Devgroup => {
                if text == "default" {
                    return int(0);
                }
                parse_number(text)
                    .map(int)
                    .unwrap_or_else(|| Err("Could not parse devgroup".into()))
            }
            Dtype::Date => {
                if let Some(n) = parse_number(text) {
                    return int(n * 1_000_000_000);
                }
                parse_date(text)
                    .map(|secs| int(secs as u128 * 1_000_000_000))
                    .unwrap_or_else(|| Err(format!("Cannot parse time \"{text}\"")))
            }
            Dtype::Day => {
                if let Some(n) = parse_number(text) {
                    return if n < 7 {
                        int(n)
                    } else {
                        Err("Day number must be between 0 and 6".into())
                    };
                }
                let lower = text.to_ascii_lowercase();
                match DAYS.iter().position(|d| {
                    d.to_ascii_lowercase() == lower
                        || (lower.len() >= 3 && d.to_ascii_lowercase().starts_with(&lower))
                }) {
                    Some(i) => int(i as u128),
                    None => Err(format!("\"{text}\" is not a valid day name")),
                }
            }
            Dtype::Hour => {
                let parts: Vec<&str> = text.split(':').collect();
                let nums: Option<Vec<u64>> = parts.iter().map(|p| p.parse().ok()).collect();
                match nums.as_deref() {
                    Some([h, m]) if *h < 24 && *m < 60 => int((h * 3600 + m * 60) as u128),
                    Some([h, m, s]) if *h < 24 && *m < 60 && *s <= 60 => {
                        int(((h * 3600 + m * 60 + s) % 86400) as u128)
                    }
                    _ => Err(format!("Could not parse hour \"{text}\"")),
                }
            }
            Dtype::Obj(_) => {
                if text.is_empty() || text.len() > 32 {
                    return Err("Invalid object name".into());
                }
                Ok(Val::padded(text.as_bytes(), 32))
            }
            Dtype::Str16 => {
                if text.is_empty() || text.len() > 16 {
                    return Err("Invalid string length".into());
                }
                Ok(Val::padded(text.as_bytes(), 16))
            }
            Dtype::Time => {
                if let Some(n) = parse_number(text) {
                    return int(n * 1000);
                }
                parse_time(text)
                    .map(|ms| int(ms as u128))
                    .unwrap_or_else(|| Err("Could not parse time".to_string()))
            }
            _ => {
                if let Some(n) = parse_number(text) {
                    return int(n);
                }
                if let Some(tab) = self.symbols() {
                    if let Some(v) = lookup(tab, text) {
                        return int(v as u128);
                    }
                }
                Err(match self {
                    Dtype::CtState => "Could not parse conntrack state".to_string(),
                    Dtype::CtStatus => "Could not parse conntrack status".to_string(),
                    Dtype::IcmpType => "Could not parse ICMP type".to_string(),
                    Dtype::Icmpv6Type => "Could not parse ICMPv6 type".to_string(),
                    Dtype::IcmpCode => "Could not parse ICMP code".to_string(),
                    Dtype::Icmpv6Code => "Could not parse ICMPv6 code".to_string(),
                    Dtype::IcmpxCode => "Could not parse icmpx code".to_string(),
                    Dtype::NfProto => "Could not parse netfilter protocol".to_string(),
                    Dtype::TcpFlags => "Could not parse TCP flag".to_string(),
                    Dtype::EtherType => "Could not parse Ethernet protocol".to_string(),
                    Dtype::PktType => "Could not parse packet type".to_string(),
                    Dtype::Boolean => "Could not parse boolean".to_string(),
                    Dtype::Dscp => "Could not parse Differentiated Services Code Point".to_string(),
                    Dtype::Ecn => "Could not parse Explicit Congestion Notification".to_string(),
                    Dtype::ArpOp => "Could not parse ARP operation".to_string(),
                    Dtype::Mark => "Could not parse packet mark".to_string(),
                    Dtype::CtDir => "Could not parse conntrack direction".to_string(),
                    _ => format!("Could not parse {}", self.describe()),
                })
            }
        }
    }

    /// nft's human description (used in error messages).
    pub fn describe(self) -> &'static str {
        match self {
            Dtype::Integer(_) | Dtype::Hex(_) => "integer",
            Dtype::Ipv4Addr => "IPv4 address",
            Dtype::Ipv6Addr => "IPv6 address",
            Dtype::InetService => "internet network service",
            Dtype::InetProto => "Internet protocol",
            _ => self.name(),
        }
    }

    /// Prints a value of this type.
    pub fn print(self, v: &Val, fmt: ValFmt, out: &mut String) {
        let n = v.to_u128();
        match self {
            Dtype::Ipv4Addr => {
                let b = v.bytes();
                let _ = write!(out, "{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
            }
            Dtype::Ipv6Addr => print_ipv6(&v.first16(), out),
            Dtype::EtherAddr => {
                let parts: Vec<String> = v.bytes().iter().map(|x| format!("{x:02x}")).collect();
                out.push_str(&parts.join(":"));
            }
            Dtype::Ifname | Dtype::Iface => {
                let _ = write!(out, "\"{}\"", v.as_str());
            }
            Dtype::Mark => {
                let _ = write!(out, "0x{:08x}", n);
            }
            Dtype::Hex(_) => {
                let _ = write!(out, "0x{:x}", n);
            }
            Dtype::Classid => match n {
                0xffff_ffff => out.push_str("root"),
                0 => out.push_str("none"),
                _ => {
                    let _ = write!(out, "{:x}:{:x}", n >> 16, n & 0xffff);
                }
            },
            Dtype::Devgroup => {
                if n == 0 {
                    out.push_str("\"default\"");
                } else {
                    let _ = write!(out, "{n}");
                }
            }
            Dtype::Time => print_time(n as u64, out),
            Dtype::IcmpCode | Dtype::Icmpv6Code => {
                let _ = write!(out, "{n}");
            }
            Dtype::InetService | Dtype::Integer(_) => {
                let _ = write!(out, "{n}");
            }
            Dtype::InetProto if fmt.numeric_proto => {
                let _ = write!(out, "{n}");
            }
            Dtype::ProtoNum | Dtype::Uid | Dtype::Gid | Dtype::CtLabel => {
                let _ = write!(out, "{n}");
            }
            Dtype::Day => match DAYS.get(n as usize) {
                Some(d) => {
                    let _ = write!(out, "\"{d}\"");
                }
                None => {
                    let _ = write!(out, "{n}");
                }
            },
            Dtype::Hour => {
                let n = n as u64 % 86400;
                let (h, m, s) = (n / 3600, n / 60 % 60, n % 60);
                if s == 0 {
                    let _ = write!(out, "\"{h:02}:{m:02}\"");
                } else {
                    let _ = write!(out, "\"{h:02}:{m:02}:{s:02}\"");
                }
            }
            Dtype::Date => {
                let secs = (n / 1_000_000_000) as i64;
                out.push('"');
                print_date(secs, out);
                out.push('"');
            }
            Dtype::Str16 | Dtype::Obj(_) => {
                let _ = write!(out, "\"{}\"", v.as_str());
            }
            Dtype::CtState | Dtype::CtStatus | Dtype::TcpFlags | Dtype::CtEvent
                if !fmt.numeric_symbols =>
            {
                let tab = self.symbols().unwrap_or(&[]);
                let mut first = true;
                let mut rest = n as u64;
                for sym in tab {
                    if sym.val != 0 && rest & sym.val == sym.val && (n as u64) & sym.val == sym.val
                    {
                        if !first {
                            out.push(',');
                        }
                        out.push_str(sym.name);
                        first = false;
                        rest &= !sym.val;
                    }
                }
                if rest != 0 || first {
                    if !first {
                        out.push(',');
                    }
                    let _ = write!(out, "0x{:x}", rest);
                }
            }
            _ => {
                if !fmt.numeric_symbols {
                    if let Some(name) = self.symbols().and_then(|t| rlookup(t, n as u64)) {
                        out.push_str(name);
                        return;
                    }
                }
                if self == Dtype::Dscp {
                    // nft's dscp_type basefmt "0x%.2Zx"
                    let _ = write!(out, "0x{n:02x}");
                } else {
                    let _ = write!(out, "{n}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `prefix_bounds` is `v & mask` and `v | !mask`, for every width and prefix length.
    #[test]
    fn prefix_bounds_are_and_and_or_not() {
        let mut x = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834u128;
        for len in 0..=20usize {
            for plen in 0..=170u32 {
                x = x.rotate_left(7) ^ (x >> 3) ^ plen as u128;
                let mut bytes = [0u8; 20];
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = (x >> (8 * (i % 16))) as u8 ^ i as u8;
                }
                let v = Val::from_bytes(&bytes[..len]);
                let m = Val::prefix_mask(len, plen);
                let lo = v.and(&m);
                let want = (lo, lo.or(&m.not()));
                assert_eq!(v.prefix_bounds(plen), want, "len {len} plen {plen}");
            }
        }
    }

    /// `parse_fast` is `parse` where it answers, for every type, and answers for the usual literals.
    #[test]
    fn parse_fast_agrees_with_parse() {
        let mut types = vec![
            Dtype::Integer(1),
            Dtype::Integer(8),
            Dtype::Integer(16),
            Dtype::Integer(32),
            Dtype::Integer(64),
            Dtype::Integer(128),
            Dtype::Hex(8),
            Dtype::Hex(32),
            Dtype::Obj(ObjKind::Counter),
        ];
        types.extend([
            Dtype::Ipv4Addr,
            Dtype::Ipv6Addr,
            Dtype::EtherAddr,
            Dtype::InetProto,
            Dtype::InetService,
            Dtype::Mark,
            Dtype::Ifname,
            Dtype::Iface,
            Dtype::CtState,
            Dtype::CtStatus,
            Dtype::CtDir,
            Dtype::IcmpType,
            Dtype::IcmpCode,
            Dtype::Icmpv6Type,
            Dtype::Icmpv6Code,
            Dtype::IcmpxCode,
            Dtype::NfProto,
            Dtype::TcpFlags,
            Dtype::EtherType,
            Dtype::PktType,
            Dtype::Boolean,
            Dtype::Dscp,
            Dtype::Ecn,
            Dtype::ArpOp,
            Dtype::Classid,
            Dtype::Devgroup,
            Dtype::Time,
            Dtype::IfType,
            Dtype::Uid,
            Dtype::Gid,
            Dtype::CtEvent,
            Dtype::Day,
            Dtype::Hour,
            Dtype::ProtoNum,
            Dtype::CtLabel,
            Dtype::Str16,
            Dtype::MhType,
            Dtype::IgmpType,
            Dtype::DccpType,
            Dtype::MptcpSubtype,
            Dtype::Date,
            Dtype::FibAddrType,
            Dtype::Verdict,
        ]);
        let texts = [
            "0",
            "1",
            "2",
            "3",
            "6",
            "7",
            "15",
            "16",
            "63",
            "64",
            "127",
            "128",
            "255",
            "256",
            "1024",
            "65535",
            "65536",
            "4294967295",
            "4294967296",
            "18446744073709551615",
            "9999999999999999999",
            "99999999999999999999",
            "007",
            "10.0.0.1",
            "192.0.2.255",
            "1.2.3.256",
            "01.2.3.4",
            "1.2.3",
            "0x10",
            "tcp",
            "",
            "1a",
            "-1",
            "+1",
            "1.5",
        ];
        for t in types {
            for x in texts {
                if let Some(v) = t.parse_fast(x) {
                    for quoted in [false, true] {
                        assert_eq!(t.parse(x, quoted), Ok(v), "{t:?} {x:?} quoted {quoted}");
                    }
                }
            }
        }
        assert!(Dtype::Ipv4Addr.parse_fast("10.1.2.3").is_some());
        assert!(Dtype::InetService.parse_fast("1024").is_some());
        assert!(Dtype::Mark.parse_fast("4294967295").is_some());
        assert_eq!(Dtype::InetService.parse_fast("65536"), None);
        assert_eq!(Dtype::Time.parse_fast("5"), None);
    }

    /// `dotted_quad` accepts what the standard parser accepts, over strings of digits and dots.
    #[test]
    fn dotted_quad_is_the_standard_parser() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"0123456789..0125a";
        let mut hits = 0;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s: String = if x % 3 == 0 {
                // anything of digits, dots and a letter
                let len = (x >> 60) as usize;
                (0..len)
                    .map(|i| alphabet[((x >> (4 * i)) as usize + i) % alphabet.len()] as char)
                    .collect()
            } else {
                // four groups of 0 to 3 digits (sometimes five)
                let groups = 4 + (x >> 62 == 3) as usize;
                (0..groups)
                    .map(|g| {
                        let y = x >> (12 * g);
                        let n = (y & 3) as usize;
                        (0..n)
                            .map(|i| (b'0' + ((y >> (2 + 3 * i)) % 10) as u8) as char)
                            .collect::<String>()
                    })
                    .collect::<Vec<_>>()
                    .join(".")
            };
            let want = s.parse::<std::net::Ipv4Addr>().ok().map(|a| a.octets());
            hits += want.is_some() as u32;
            assert_eq!(dotted_quad(&s), want, "{s:?}");
        }
        assert!(hits > 1000, "{hits}");
    }

    /// The inline constructors agree with the general ones.
    #[test]
    fn inline_constructors() {
        for len in 0..=16usize {
            for v in [
                0u128,
                1,
                0xff,
                0x1234,
                u128::MAX,
                0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
            ] {
                let mut b = [0u8; 32];
                let be = v.to_be_bytes();
                b[..len].copy_from_slice(&be[16 - len..]);
                assert_eq!(Val::from_u128(v, len), Val::of(&b, len));
                assert_eq!(
                    Val::from_u128(v, len).to_u128(),
                    v & if len == 16 {
                        u128::MAX
                    } else {
                        (1u128 << (8 * len)) - 1
                    }
                );
            }
            for n in 0..=16usize {
                let bytes: Vec<u8> = (1..=n as u8).collect();
                let mut b = [0u8; 32];
                b[..n].copy_from_slice(&bytes);
                assert_eq!(Val::padded(&bytes, len), Val::of(&b, len), "{n} into {len}");
            }
        }
        for s in [
            "0",
            "7",
            "65535",
            "9999999999999999999",
            "18446744073709551616",
            "0x1f",
            "1a",
            "",
            "+1",
            "1.2",
        ] {
            assert_eq!(
                parse_number(s),
                s.parse::<u128>()
                    .ok()
                    .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
                    .or_else(|| s
                        .strip_prefix("0x")
                        .and_then(|h| u128::from_str_radix(h, 16).ok())),
                "{s}"
            );
        }
    }

    #[test]
    fn prefix_masks_bytewise() {
        for len in 0..=20usize {
            for plen in 0..=170u32 {
                let want: Vec<u8> = (0..len)
                    .map(|i| {
                        let bits = (plen as i64 - 8 * i as i64).clamp(0, 8) as u32;
                        if bits == 0 {
                            0
                        } else {
                            0xffu8 << (8 - bits)
                        }
                    })
                    .collect();
                let m = Val::prefix_mask(len, plen);
                assert_eq!(
                    (m.len as usize, m.bytes()),
                    (len, &want[..]),
                    "{len} {plen}"
                );
                assert_eq!(m, Val::of(&m.wide(), len), "{len} {plen}");
            }
        }
    }

    #[test]
    fn dotted_quad_accepts_what_ipv4addr_accepts() {
        for s in [
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.1.1.1",
            "1..1.1",
            "1.1.1.",
            ".1.1.1",
            "1.1.1.1a",
            "a.b.c.d",
            "1000.1.1.1",
            "",
            "192.0.2.00",
            "9.99.199.249",
            "1.2.3.04",
            "1.2.3.4.",
            "1..2.3",
        ] {
            let want = s.parse::<std::net::Ipv4Addr>().ok().map(|a| a.octets());
            assert_eq!(dotted_quad(s), want, "{s:?}");
        }
        for n in [
            "0",
            "7",
            "65535",
            "18446744073709551615",
            "99999999999999999999",
            "0x1f",
        ] {
            let want = n
                .strip_prefix("0x")
                .map_or_else(|| n.parse().ok(), |h| u128::from_str_radix(h, 16).ok());
            assert_eq!(parse_number(n), want, "{n}");
        }
    }

    fn p(t: Dtype, v: &Val) -> String {
        let mut s = String::new();
        t.print(v, ValFmt::default(), &mut s);
        s
    }

    #[test]
    fn long_values_are_interned_and_read_back() {
        let name = b"a-counter-name-of-thirty-bytes";
        let a = Val::padded(name, 32);
        let b = Val::padded(name, 32);
        let c = Val::padded(b"another", 32);
        assert_eq!(a.len, 32);
        assert_eq!(&a.bytes()[..name.len()], name);
        assert!(a.bytes()[name.len()..].iter().all(|&x| x == 0));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.cmp(&c), a.bytes().cmp(c.bytes()));
        assert_eq!(a.as_str(), "a-counter-name-of-thirty-bytes");
        assert_eq!(a.xor(&a), Val::from_u128(0, 32));
        assert_eq!(a.not().not(), a);
        let short = Val::from_u128(0x0a00_0001, 4);
        assert_eq!(short.bytes(), [10, 0, 0, 1]);
        assert_eq!(short.and(&Val::prefix_mask(4, 8)).bytes(), [10, 0, 0, 0]);
        assert_eq!(Val::from_u128(1, 20).bytes()[19], 1);
        assert_eq!(Val::from_u128(1, 20).to_u128(), 1);
    }

    #[test]
    fn dates_round_trip() {
        for d in [
            "1970-01-01 00:00:00",
            "1970-05-23 21:07:14",
            "2019-06-21 17:00:00",
            "2000-02-29 23:59:59",
        ] {
            let mut out = String::new();
            print_date(parse_date(d).unwrap(), &mut out);
            assert_eq!(out, d);
        }
        assert_eq!(parse_date("1970-01-02 00:00"), Some(86400));
        assert_eq!(parse_date("meh"), None);
    }

    #[test]
    fn parse_and_print() {
        let v = Dtype::Ipv4Addr.parse("192.0.2.1", false).unwrap();
        assert_eq!(v.bytes(), &[192, 0, 2, 1]);
        assert_eq!(p(Dtype::Ipv4Addr, &v), "192.0.2.1");
        assert_eq!(
            Dtype::InetService.parse("ssh", false).unwrap().bytes(),
            &[0, 22]
        );
        assert_eq!(
            p(
                Dtype::InetService,
                &Dtype::InetService.parse("https", false).unwrap()
            ),
            "443"
        );
        assert_eq!(
            p(Dtype::IcmpType, &Dtype::IcmpType.parse("8", false).unwrap()),
            "echo-request"
        );
        assert_eq!(
            p(Dtype::CtState, &Val::from_u128(6 | 8, 4)),
            "established,related,new"
        );
        assert_eq!(p(Dtype::Mark, &Val::from_u128(16, 4)), "0x00000010");
        assert_eq!(
            p(
                Dtype::Ipv6Addr,
                &Dtype::Ipv6Addr.parse("fe80::1", false).unwrap()
            ),
            "fe80::1"
        );
        assert_eq!(
            Dtype::InetService.parse("65536", false).unwrap_err(),
            "Service out of range"
        );
        assert!(Dtype::Integer(16)
            .parse("65536", false)
            .unwrap_err()
            .contains("exceeds valid range 0-65535"));
        assert_eq!(
            Dtype::CtState.parse("relatd", false).unwrap_err(),
            "Could not parse conntrack state"
        );
    }
}
