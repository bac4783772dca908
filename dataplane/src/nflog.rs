//! The `log` statement's line, as the kernel's nf_log_syslog writes it to the kernel log:
//! `PREFIX IN=fw-cli OUT=fw-srv MAC=… SRC=192.0.2.2 DST=198.51.100.2 LEN=84 TOS=0x00 PREC=0x00 TTL=63
//! ID=39559 DF PROTO=ICMP TYPE=8 CODE=0 ID=12880 SEQ=1 ` (trailing space included, as the kernel's).
//! Field order, spelling, the `INCOMPLETE [N bytes]`/`TRUNCATED` markers for short packets and the
//! `[…]` quote of the packet inside ICMP errors follow `net/netfilter/nf_log_syslog.c`; the unit
//! tests hold IPv4 lines captured from this machine's kernel (the IPv6 line follows the source but has
//! not been compared with a capture).
//!
//! Pure formatting over the packet's bytes: where the line goes (the daemon's log) is the worker's
//! business.

use rules::stmt::log::{Log, IPOPT, MAC, TCPOPT, TCPSEQ};
use rules::{Hook, NfProto, PacketCtx};
use std::fmt::Write;

/// syslog severity of the statement (`level warn` by default, as nft's).
pub fn severity(log: &Log) -> u8 {
    match log.level.as_deref() {
        Some("emerg") => 0,
        Some("alert") => 1,
        Some("crit") => 2,
        Some("err") => 3,
        Some("notice") => 5,
        Some("info") | Some("audit") => 6,
        Some("debug") => 7,
        _ => 4,
    }
}

/// The kernel's log line for `pkt` (without the severity marker and the newline).
pub fn line(log: &Log, pkt: &PacketCtx<'_>) -> String {
    let mut m = String::with_capacity(256);
    let (iif, oif) = match pkt.hook {
        // locally generated packets have no input device
        Hook::Output => ("", pkt.oifname),
        Hook::Prerouting | Hook::Input | Hook::Ingress => (pkt.iifname, ""),
        _ => (pkt.iifname, pkt.oifname),
    };
    let _ = write!(
        m,
        "{}IN={iif} OUT={oif} ",
        log.prefix.as_deref().unwrap_or("")
    );
    let f = &*pkt.frame;
    if !iif.is_empty() && pkt.nh_off >= 14 && f.len() >= 14 {
        if log.flags & MAC != 0 {
            m.push_str("MACSRC=");
            hex_join(&mut m, &f[6..12]);
            m.push_str(" MACDST=");
            hex_join(&mut m, &f[0..6]);
            let _ = write!(m, " MACPROTO={:04x} ", u16::from_be_bytes([f[12], f[13]]));
        } else {
            m.push_str("MAC=");
            hex_join(&mut m, &f[..14]);
            m.push(' ');
        }
    }
    let end = f.len();
    match pkt.nfproto {
        NfProto::Ipv4 => ipv4(&mut m, log.flags, f, pkt.nh_off, end, true),
        NfProto::Ipv6 => ipv6(&mut m, log.flags, f, pkt.nh_off, end, true),
    }
    if pkt.mark != 0 {
        let _ = write!(m, "MARK=0x{:x} ", pkt.mark);
    }
    m
}

/// `aa:bb:…`, lower-case, as `%pM` and the kernel's MAC header dump print bytes.
fn hex_join(m: &mut String, b: &[u8]) {
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            m.push(':');
        }
        let _ = write!(m, "{x:02x}");
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// dump_ipv4_packet: `end` is where the packet's bytes stop (the frame, or the quoting ICMP error's).
fn ipv4(m: &mut String, flags: u8, f: &[u8], off: usize, end: usize, outer: bool) {
    if off + 20 > end {
        m.push_str("TRUNCATED");
        return;
    }
    let ih = &f[off..];
    let _ = write!(
        m,
        "SRC={}.{}.{}.{} DST={}.{}.{}.{} ",
        ih[12], ih[13], ih[14], ih[15], ih[16], ih[17], ih[18], ih[19]
    );
    let frag = be16(ih, 6);
    let _ = write!(
        m,
        "LEN={} TOS=0x{:02X} PREC=0x{:02X} TTL={} ID={} ",
        be16(ih, 2),
        ih[1] & 0x1e,
        ih[1] & 0xe0,
        ih[8],
        be16(ih, 4)
    );
    if frag & 0x8000 != 0 {
        m.push_str("CE ");
    }
    if frag & 0x4000 != 0 {
        m.push_str("DF ");
    }
    if frag & 0x2000 != 0 {
        m.push_str("MF ");
    }
    let offset = frag & 0x1fff;
    if offset != 0 {
        let _ = write!(m, "FRAG:{offset} ");
    }
    let ihl = (ih[0] & 0x0f) as usize * 4;
    if flags & IPOPT != 0 && ihl > 20 {
        if off + ihl > end {
            m.push_str("TRUNCATED");
            return;
        }
        m.push_str("OPT (");
        for b in &f[off + 20..off + ihl] {
            let _ = write!(m, "{b:02X}");
        }
        m.push_str(") ");
    }
    let th = off + ihl;
    let fragment = offset != 0;
    match ih[9] {
        6 => tcp(m, flags, f, th, end, fragment),
        17 | 136 => udp(m, ih[9] == 17, f, th, end, fragment),
        1 => {
            m.push_str("PROTO=ICMP ");
            if fragment {
                return;
            }
            if th + 4 > end {
                let _ = write!(m, "INCOMPLETE [{} bytes] ", end.saturating_sub(th));
                return;
            }
            let (ty, code) = (f[th], f[th + 1]);
            let _ = write!(m, "TYPE={ty} CODE={code} ");
            let required = match ty {
                0 | 8 => 4,
                3 | 4 | 5 | 11 | 12 => 8 + 20,
                13 | 14 => 20,
                17 | 18 => 12,
                _ => 0,
            };
            if required != 0 && end - th < required {
                let _ = write!(m, "INCOMPLETE [{} bytes] ", end - th);
                return;
            }
            match ty {
                0 | 8 => {
                    let _ = write!(m, "ID={} SEQ={} ", be16(f, th + 4), be16(f, th + 6));
                }
                12 => {
                    let _ = write!(m, "PARAMETER={} ", f[th + 4]);
                }
                3 | 4 | 5 | 11 => {
                    if ty == 5 {
                        let g = &f[th + 4..th + 8];
                        let _ = write!(m, "GATEWAY={}.{}.{}.{} ", g[0], g[1], g[2], g[3]);
                    }
                    if outer {
                        m.push('[');
                        ipv4(m, flags, f, th + 8, end, false);
                        m.push_str("] ");
                    }
                    if ty == 3 && code == 4 {
                        let _ = write!(m, "MTU={} ", be16(f, th + 6));
                    }
                }
                _ => {}
            }
        }
        50 => {
            m.push_str("PROTO=ESP ");
            spi(m, f, th, 0, end, fragment);
        }
        51 => {
            m.push_str("PROTO=AH ");
            spi(m, f, th, 4, end, fragment);
        }
        p => {
            let _ = write!(m, "PROTO={p} ");
        }
    }
}

fn spi(m: &mut String, f: &[u8], th: usize, at: usize, end: usize, fragment: bool) {
    if fragment {
        return;
    }
    if th + at + 4 > end {
        let _ = write!(m, "INCOMPLETE [{} bytes] ", end.saturating_sub(th));
        return;
    }
    let _ = write!(m, "SPI=0x{:x} ", be32(f, th + at));
}

/// nf_log_dump_tcp_header
fn tcp(m: &mut String, flags: u8, f: &[u8], th: usize, end: usize, fragment: bool) {
    m.push_str("PROTO=TCP ");
    if fragment {
        return;
    }
    if th + 20 > end {
        let _ = write!(m, "INCOMPLETE [{} bytes] ", end.saturating_sub(th));
        return;
    }
    let t = &f[th..];
    let _ = write!(m, "SPT={} DPT={} ", be16(t, 0), be16(t, 2));
    if flags & TCPSEQ != 0 {
        let _ = write!(m, "SEQ={} ACK={} ", be32(t, 4), be32(t, 8));
    }
    let _ = write!(m, "WINDOW={} ", be16(t, 14));
    let _ = write!(m, "RES=0x{:02x} ", (t[12] & 0x0e) << 2);
    for (bit, name) in [
        (0x80u8, "CWR "),
        (0x40, "ECE "),
        (0x20, "URG "),
        (0x10, "ACK "),
        (0x08, "PSH "),
        (0x04, "RST "),
        (0x02, "SYN "),
        (0x01, "FIN "),
    ] {
        if t[13] & bit != 0 {
            m.push_str(name);
        }
    }
    let _ = write!(m, "URGP={} ", be16(t, 18));
    let doff = (t[12] >> 4) as usize * 4;
    if flags & TCPOPT != 0 && doff > 20 {
        if th + doff > end {
            m.push_str("OPT (TRUNCATED)");
            return;
        }
        m.push_str("OPT (");
        for b in &f[th + 20..th + doff] {
            let _ = write!(m, "{b:02X}");
        }
        m.push_str(") ");
    }
}

/// nf_log_dump_udp_header
fn udp(m: &mut String, plain: bool, f: &[u8], th: usize, end: usize, fragment: bool) {
    m.push_str(if plain {
        "PROTO=UDP "
    } else {
        "PROTO=UDPLITE "
    });
    if fragment {
        return;
    }
    if th + 8 > end {
        let _ = write!(m, "INCOMPLETE [{} bytes] ", end.saturating_sub(th));
        return;
    }
    let _ = write!(
        m,
        "SPT={} DPT={} LEN={} ",
        be16(f, th),
        be16(f, th + 2),
        be16(f, th + 4)
    );
}

/// dump_ipv6_packet: addresses in full (`%pI6`), extension headers walked.
fn ipv6(m: &mut String, flags: u8, f: &[u8], off: usize, end: usize, outer: bool) {
    if off + 40 > end {
        m.push_str("TRUNCATED");
        return;
    }
    let ih = &f[off..];
    // `%pI6`: eight groups of four hex digits, uncompressed
    let addr = |m: &mut String, b: &[u8]| {
        for i in 0..8 {
            if i > 0 {
                m.push(':');
            }
            let _ = write!(m, "{:04x}", be16(b, 2 * i));
        }
    };
    m.push_str("SRC=");
    addr(m, &ih[8..24]);
    m.push_str(" DST=");
    addr(m, &ih[24..40]);
    m.push(' ');
    let w = be32(ih, 0);
    let _ = write!(
        m,
        "LEN={} TC={} HOPLIMIT={} FLOWLBL={} ",
        be16(ih, 4) as usize + 40,
        (w & 0x0ff0_0000) >> 20,
        ih[7],
        w & 0x000f_ffff
    );
    let mut fragment = false;
    let mut ptr = off + 40;
    let mut next = ih[6];
    while matches!(next, 0 | 43 | 44 | 50 | 51 | 60) {
        if ptr + 8 > end {
            m.push_str("TRUNCATED");
            return;
        }
        if flags & IPOPT != 0 {
            m.push_str("OPT ( ");
        }
        let hlen = match next {
            44 => {
                let fo = be16(f, ptr + 2);
                let _ = write!(m, "FRAG:{} ", fo & 0xfff8);
                if fo & 1 != 0 {
                    m.push_str("INCOMPLETE ");
                }
                let _ = write!(m, "ID:{:08x} ", be32(f, ptr + 4));
                if fo & 0xfff8 != 0 {
                    fragment = true;
                }
                8
            }
            0 | 43 | 60 => {
                if fragment {
                    if flags & IPOPT != 0 {
                        m.push(')');
                    }
                    return;
                }
                (f[ptr + 1] as usize + 1) * 8
            }
            51 => {
                if flags & IPOPT != 0 {
                    m.push_str("AH ");
                    if !fragment {
                        let _ = write!(m, "SPI=0x{:x} ", be32(f, ptr + 4));
                    }
                }
                (f[ptr + 1] as usize + 2) * 4
            }
            _ => {
                // ESP: nothing after it can be read
                if flags & IPOPT != 0 {
                    m.push_str("ESP ");
                    if !fragment {
                        let _ = write!(m, "SPI=0x{:x} ", be32(f, ptr));
                    }
                    m.push_str(") ");
                }
                return;
            }
        };
        if flags & IPOPT != 0 {
            m.push_str(") ");
        }
        next = f[ptr];
        ptr += hlen;
    }
    match next {
        6 => tcp(m, flags, f, ptr, end, fragment),
        17 | 136 => udp(m, next == 17, f, ptr, end, fragment),
        58 => {
            m.push_str("PROTO=ICMPv6 ");
            if fragment {
                return;
            }
            if ptr + 4 > end {
                let _ = write!(m, "INCOMPLETE [{} bytes] ", end.saturating_sub(ptr));
                return;
            }
            let (ty, code) = (f[ptr], f[ptr + 1]);
            let _ = write!(m, "TYPE={ty} CODE={code} ");
            match ty {
                128 | 129 if ptr + 8 <= end => {
                    let _ = write!(m, "ID={} SEQ={} ", be16(f, ptr + 4), be16(f, ptr + 6));
                }
                1..=4 if ptr + 8 <= end => {
                    if ty == 4 {
                        let _ = write!(m, "POINTER={:08x} ", be32(f, ptr + 4));
                    }
                    if outer {
                        m.push('[');
                        ipv6(m, flags, f, ptr + 8, end, false);
                        m.push_str("] ");
                    }
                    if ty == 2 {
                        let _ = write!(m, "MTU={} ", be32(f, ptr + 4));
                    }
                }
                _ => {}
            }
        }
        p => {
            let _ = write!(m, "PROTO={p} ");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FW_CLI: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const CLI: [u8; 6] = [2, 0, 0, 0, 1, 2];

    fn ipv4_frame(id: u16, df: bool, ttl: u8, tos: u8, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&FW_CLI);
        f.extend_from_slice(&CLI);
        f.extend_from_slice(&[8, 0]);
        let len = (20 + l4.len()) as u16;
        f.extend_from_slice(&[0x45, tos]);
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
        f.extend_from_slice(&[ttl, proto, 0, 0, 192, 0, 2, 2, 198, 51, 100, 2]);
        f.extend_from_slice(l4);
        f
    }

    fn ctx<'a>(f: &'a mut [u8], hook: Hook, mark: u32) -> PacketCtx<'a> {
        PacketCtx {
            th_off: Some(34),
            iif: 2,
            iifname: "fa",
            oif: 3,
            oifname: "fb",
            mark,
            ..PacketCtx::new(f, hook, 0)
        }
    }

    fn log(prefix: &str, flags: u8) -> Log {
        Log {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            flags,
            ..Default::default()
        }
    }

    // The expected lines are the kernel's (6.18, `nf_log_all_netns=1`), for the same packets.
    #[test]
    fn icmp_echo_forwarded() {
        let mut icmp = vec![8, 0, 0, 0];
        icmp.extend_from_slice(&12880u16.to_be_bytes());
        icmp.extend_from_slice(&1u16.to_be_bytes());
        icmp.resize(64, 0);
        let f = ipv4_frame(39559, true, 63, 0, 1, &icmp);
        assert_eq!(
            line(&log("FWD: ", 0), &ctx(&mut f.clone(), Hook::Forward, 0)),
            "FWD: IN=fa OUT=fb MAC=02:00:00:00:01:01:02:00:00:00:01:02:08:00 SRC=192.0.2.2 \
             DST=198.51.100.2 LEN=84 TOS=0x00 PREC=0x00 TTL=63 ID=39559 DF PROTO=ICMP TYPE=8 CODE=0 \
             ID=12880 SEQ=1 "
        );
    }

    #[test]
    fn udp_at_prerouting_and_postrouting_with_mark() {
        let mut udp = vec![0x85, 0x99, 0, 9, 0, 11, 0, 0];
        udp.extend_from_slice(b"hi\n");
        let f = ipv4_frame(33759, true, 64, 0, 17, &udp);
        assert_eq!(
            line(&log("PRE ", 0), &ctx(&mut f.clone(), Hook::Prerouting, 0)),
            "PRE IN=fa OUT= MAC=02:00:00:00:01:01:02:00:00:00:01:02:08:00 SRC=192.0.2.2 \
             DST=198.51.100.2 LEN=31 TOS=0x00 PREC=0x00 TTL=64 ID=33759 DF PROTO=UDP SPT=34201 DPT=9 \
             LEN=11 "
        );
        let f = ipv4_frame(33759, true, 63, 0, 17, &udp);
        assert_eq!(
            line(&log("", 0), &ctx(&mut f.clone(), Hook::Postrouting, 5)),
            "IN=fa OUT=fb MAC=02:00:00:00:01:01:02:00:00:00:01:02:08:00 SRC=192.0.2.2 \
             DST=198.51.100.2 LEN=31 TOS=0x00 PREC=0x00 TTL=63 ID=33759 DF PROTO=UDP SPT=34201 DPT=9 \
             LEN=11 MARK=0x5 "
        );
    }

    #[test]
    fn icmp_error_quotes_the_packet_and_output_has_no_input() {
        let mut udp = vec![0x85, 0x99, 0, 9, 0, 11, 0, 0];
        udp.extend_from_slice(b"hi\n");
        let inner = ipv4_frame(33759, true, 63, 0, 17, &udp);
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&inner[14..]);
        let mut f = ipv4_frame(26908, false, 63, 0xc0, 1, &icmp);
        // from srv to cli
        f[26..30].copy_from_slice(&[198, 51, 100, 2]);
        f[30..34].copy_from_slice(&[192, 0, 2, 2]);
        let mut g = f.clone();
        let mut c = ctx(&mut g, Hook::Forward, 0);
        c.iifname = "fb";
        c.oifname = "fa";
        let got = line(&log("FWD: ", 0), &c);
        assert!(
            got.ends_with(
                "SRC=198.51.100.2 DST=192.0.2.2 LEN=59 TOS=0x00 PREC=0xC0 TTL=63 ID=26908 PROTO=ICMP \
                 TYPE=3 CODE=3 [SRC=192.0.2.2 DST=198.51.100.2 LEN=31 TOS=0x00 PREC=0x00 TTL=63 \
                 ID=33759 DF PROTO=UDP SPT=34201 DPT=9 LEN=11 ] "
            ),
            "{got}"
        );
        let mut reply = vec![0, 0, 0, 0];
        reply.extend_from_slice(&12882u16.to_be_bytes());
        reply.extend_from_slice(&1u16.to_be_bytes());
        reply.resize(64, 0);
        let mut f = ipv4_frame(57364, false, 64, 0, 1, &reply);
        f[26..30].copy_from_slice(&[192, 0, 2, 1]);
        f[30..34].copy_from_slice(&[192, 0, 2, 2]);
        let mut g = f.clone();
        let mut c = ctx(&mut g, Hook::Output, 0);
        c.oifname = "fa";
        assert_eq!(
            line(&log("OUT: ", 0), &c),
            "OUT: IN= OUT=fa SRC=192.0.2.1 DST=192.0.2.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=57364 \
             PROTO=ICMP TYPE=0 CODE=0 ID=12882 SEQ=1 "
        );
    }

    #[test]
    fn tcp_syn_with_flags_all() {
        let opts = [
            0x02, 0x04, 0x05, 0xB4, 0x04, 0x02, 0x08, 0x0A, 0xE6, 0xB8, 0xD6, 0xB5, 0, 0, 0, 0,
            0x01, 0x03, 0x03, 0x0A,
        ];
        let mut t = Vec::new();
        t.extend_from_slice(&40934u16.to_be_bytes());
        t.extend_from_slice(&80u16.to_be_bytes());
        t.extend_from_slice(&196709527u32.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        t.extend_from_slice(&[0xa0, 0x02]);
        t.extend_from_slice(&64240u16.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(&opts);
        let f = ipv4_frame(51976, true, 63, 0, 6, &t);
        let all = TCPSEQ | TCPOPT | IPOPT | MAC | rules::stmt::log::UID;
        assert_eq!(
            line(&log("ALL: ", all), &ctx(&mut f.clone(), Hook::Forward, 0)),
            "ALL: IN=fa OUT=fb MACSRC=02:00:00:00:01:02 MACDST=02:00:00:00:01:01 MACPROTO=0800 \
             SRC=192.0.2.2 DST=198.51.100.2 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=51976 DF PROTO=TCP \
             SPT=40934 DPT=80 SEQ=196709527 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 \
             OPT (020405B40402080AE6B8D6B5000000000103030A) "
        );
        // without flags: no sequence numbers, no options, the raw MAC header
        assert!(line(&log("", 0), &ctx(&mut f.clone(), Hook::Forward, 0))
            .ends_with("SPT=40934 DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0 "));
    }

    #[test]
    fn short_packets_are_marked_not_read_past_their_end() {
        let f = ipv4_frame(1, false, 64, 0, 6, &[0, 1, 0]);
        assert!(line(&log("", 0), &ctx(&mut f.clone(), Hook::Forward, 0))
            .ends_with("PROTO=TCP INCOMPLETE [3 bytes] "));
        let f = ipv4_frame(1, false, 64, 0, 1, &[3, 1, 0, 0, 0, 0, 0, 0, 0x45]);
        assert!(line(&log("", 0), &ctx(&mut f.clone(), Hook::Forward, 0))
            .ends_with("TYPE=3 CODE=1 INCOMPLETE [9 bytes] "));
        let mut f = ipv4_frame(1, false, 64, 0, 17, &[]);
        f.truncate(20);
        assert!(line(&log("", 0), &ctx(&mut f.clone(), Hook::Forward, 0)).ends_with("TRUNCATED"));
    }
}
