//! The XDP redirect program: hand-assembled eBPF, loaded and attached with the bpf(2) syscall (no libbpf).
//!
//! ```text
//!  r6 = r1                              ; ctx (struct xdp_md *)
//!  r2 = *(u32 *)(r1 + 0)                ; data
//!  r3 = *(u32 *)(r1 + 4)                ; data_end
//!  r4 = r2 ; r4 += 34
//!  if r4 > r3 goto pass                 ; shorter than Ethernet + IPv4 header
//!  r5 = *(u16 *)(r2 + 12)
//!  if r5 == htons(0x86dd) goto ipv6
//!  if r5 != htons(0x0800) goto pass     ; not IP (ARP, VLAN-tagged …)
//!  r5 = *(u32 *)(r2 + 30)               ; destination address, network order
//!  *(u32 *)(r10 - 4) = r5
//!  r1 = map[local_v4] ; r2 = r10 ; r2 += -4
//!  call bpf_map_lookup_elem
//!  if r0 != 0 goto pass                 ; addressed to the box itself: the kernel stack takes it
//!  r2 = *(u32 *)(r6 + 16)               ; ctx->rx_queue_index
//!  r1 = map[xsks] ; r3 = XDP_PASS       ; XDP_PASS when no socket sits on that queue
//!  call bpf_redirect_map
//!  exit
//! pass:
//!  r0 = XDP_PASS ; exit
//! ipv6:
//!  if data + 54 > data_end goto pass
//!  if *(u8 *)(data + 38) == 0xff goto pass   ; multicast destination (neighbour discovery, MLD …)
//!  copy the 16-byte destination to r10 - 32
//!  r1 = map[local_v6] ; r2 = r10 ; r2 += -32
//!  call bpf_map_lookup_elem
//!  if r0 == 0 goto redirect            ; not the box's: sluice forwards it
//!  goto pass                           ; the box's own (link-local ones included): the kernel's
//! ```
//!
//! That is the core. For NAT to the box's own addresses (masquerade, port forwards, hairpin) the program
//! goes on for a local destination instead of passing it straight away: it builds the flow key
//! `[local addr, remote addr, local port, remote port, proto, 0, 0, 0]` — from the TCP/UDP header, the
//! ICMP echo-reply identifier, or the packet quoted in an ICMP destination-unreachable/time-exceeded —
//! and redirects the frame to sluice if `local_flows` (a hash shared by every interface, filled by the
//! dataplane when it binds a connection to a local address) has it, or if `local_ports` (an array indexed
//! by destination port, bit 1 TCP / bit 2 UDP, filled from the ruleset's port forwards) claims the port.
//! Everything else local still goes to the kernel. The assembled program (see [`program`]) keeps labels
//! instead of hand-counted offsets.

use crate::{HwError, Result};
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_MAP_DELETE_ELEM: i32 = 3;
const BPF_PROG_LOAD: i32 = 5;
const BPF_LINK_CREATE: i32 = 28;

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;

const FN_MAP_LOOKUP_ELEM: i32 = 1;
const FN_REDIRECT_MAP: i32 = 51;

/// Capacity of the `local_v4` map (and of `local_v6`).
pub const MAX_LOCAL_ADDRS: u32 = 1024;

/// How the program is attached to the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// In the driver (XDP_FLAGS_DRV_MODE); veth supports it. The default.
    #[default]
    Native,
    /// Generic XDP on the skb path (XDP_FLAGS_SKB_MODE): works on any interface, slower.
    Skb,
}

impl AttachMode {
    fn flags(self) -> u32 {
        match self {
            AttachMode::Native => XDP_FLAGS_DRV_MODE,
            AttachMode::Skb => XDP_FLAGS_SKB_MODE,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes (class | op | source).
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const STX_W: u8 = 0x63;
const JGT_X: u8 = 0x2d;
const JNE_K: u8 = 0x55;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_DW_IMM: u8 = 0x18;
const LDX_B: u8 = 0x71;
const STX_H: u8 = 0x6b;
const STX_B: u8 = 0x73;
const ST_W: u8 = 0x62;
const ST_H: u8 = 0x6a;
const AND64_K: u8 = 0x57;
const LSH64_K: u8 = 0x67;
const LSH64_X: u8 = 0x6f;
const RSH64_K: u8 = 0x77;
const ADD64_X: u8 = 0x0f;
const JEQ_K: u8 = 0x15;
const JA: u8 = 0x05;
const PSEUDO_MAP_FD: u8 = 1;

/// A tiny assembler: instructions plus jumps to named labels, resolved at the end.
struct Asm {
    p: Vec<Insn>,
    labels: Vec<(&'static str, usize)>,
    jumps: Vec<(usize, &'static str)>,
}

impl Asm {
    fn new() -> Asm {
        Asm {
            p: Vec::new(),
            labels: Vec::new(),
            jumps: Vec::new(),
        }
    }
    fn i(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) -> &mut Self {
        self.p.push(insn(code, dst, src, off, imm));
        self
    }
    fn jmp(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: &'static str) -> &mut Self {
        self.jumps.push((self.p.len(), to));
        self.i(code, dst, src, 0, imm)
    }
    fn map(&mut self, reg: u8, fd: RawFd) -> &mut Self {
        self.i(LD_DW_IMM, reg, PSEUDO_MAP_FD, 0, fd)
            .i(0, 0, 0, 0, 0)
    }
    fn label(&mut self, l: &'static str) -> &mut Self {
        self.labels.push((l, self.p.len()));
        self
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, to) in &self.jumps {
            let target = self.labels.iter().find(|(l, _)| l == to).expect("label").1;
            self.p[*at].off = (target as i64 - *at as i64 - 1) as i16;
        }
        self.p
    }
}

/// The program's maps.
struct Maps {
    local_v4: RawFd,
    local_v6: RawFd,
    xsks: RawFd,
    local_flows: RawFd,
    local_ports: RawFd,
}

/// Assembles the program with the map fds patched in.
fn program(m: &Maps) -> Vec<Insn> {
    let ipv4 = u16::from_ne_bytes([0x08, 0x00]) as i32; // the ethertype as a native load sees it
    let ipv6 = u16::from_ne_bytes([0x86, 0xdd]) as i32;
    let mut a = Asm::new();
    // r6 = ctx, r7 = data, r8 = data_end
    a.i(MOV64_X, 6, 1, 0, 0)
        .i(LDX_W, 7, 1, 0, 0)
        .i(LDX_W, 8, 1, 4, 0)
        .i(MOV64_X, 4, 7, 0, 0)
        .i(ADD64_K, 4, 0, 0, 34)
        .jmp(JGT_X, 4, 8, 0, "pass")
        .i(LDX_H, 5, 7, 12, 0)
        .jmp(JEQ_K, 5, 0, ipv6, "ipv6")
        .jmp(JNE_K, 5, 0, ipv4, "pass")
        .i(LDX_W, 5, 7, 30, 0)
        .i(STX_W, 10, 5, -4, 0)
        .map(1, m.local_v4)
        .i(MOV64_X, 2, 10, 0, 0)
        .i(ADD64_K, 2, 0, 0, -4)
        .i(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM)
        .jmp(JEQ_K, 0, 0, 0, "redirect");
    // For the box. r9 = data + IP header length (the transport header is at r9 + 14).
    a.i(LDX_B, 3, 7, 14, 0)
        .i(AND64_K, 3, 0, 0, 15)
        .i(LSH64_K, 3, 0, 0, 2)
        .i(MOV64_X, 9, 7, 0, 0)
        .i(ADD64_X, 9, 3, 0, 0)
        .i(MOV64_X, 4, 9, 0, 0)
        .i(ADD64_K, 4, 0, 0, 22)
        .jmp(JGT_X, 4, 8, 0, "pass");
    // Key at r10-16: local (dst), remote (src), local port, remote port, proto, padding.
    a.i(LDX_W, 5, 7, 30, 0)
        .i(STX_W, 10, 5, -16, 0)
        .i(LDX_W, 5, 7, 26, 0)
        .i(STX_W, 10, 5, -12, 0)
        .i(ST_W, 10, 0, -4, 0)
        .i(LDX_B, 5, 7, 23, 0)
        .i(STX_B, 10, 5, -4, 0)
        .jmp(JEQ_K, 5, 0, 6, "ports")
        .jmp(JEQ_K, 5, 0, 17, "ports")
        .jmp(JNE_K, 5, 0, 1, "pass")
        .i(LDX_B, 5, 9, 14, 0)
        .jmp(JEQ_K, 5, 0, 0, "echo")
        .jmp(JEQ_K, 5, 0, 3, "error")
        .jmp(JEQ_K, 5, 0, 11, "error")
        .jmp(JA, 0, 0, 0, "pass");
    a.label("ports")
        .i(LDX_H, 5, 9, 16, 0)
        .i(STX_H, 10, 5, -8, 0)
        .i(LDX_H, 5, 9, 14, 0)
        .i(STX_H, 10, 5, -6, 0)
        .jmp(JA, 0, 0, 0, "flow");
    a.label("echo")
        .i(LDX_H, 5, 9, 18, 0)
        .i(STX_H, 10, 5, -8, 0)
        .i(ST_H, 10, 0, -6, 0)
        .jmp(JA, 0, 0, 0, "flow");
    // An ICMP error: the quoted packet (IP header of 20 bytes assumed) was sent from the local side.
    a.label("error")
        .i(MOV64_X, 4, 9, 0, 0)
        .i(ADD64_K, 4, 0, 0, 50)
        .jmp(JGT_X, 4, 8, 0, "pass")
        .i(LDX_B, 5, 9, 31, 0)
        .i(STX_B, 10, 5, -4, 0)
        .i(LDX_W, 3, 9, 34, 0)
        .i(STX_W, 10, 3, -16, 0)
        .i(LDX_W, 3, 9, 38, 0)
        .i(STX_W, 10, 3, -12, 0)
        .jmp(JEQ_K, 5, 0, 1, "error_echo")
        .i(LDX_H, 5, 9, 42, 0)
        .i(STX_H, 10, 5, -8, 0)
        .i(LDX_H, 5, 9, 44, 0)
        .i(STX_H, 10, 5, -6, 0)
        .jmp(JA, 0, 0, 0, "flow");
    a.label("error_echo")
        .i(LDX_H, 5, 9, 46, 0)
        .i(STX_H, 10, 5, -8, 0)
        .i(ST_H, 10, 0, -6, 0);
    a.label("flow")
        .map(1, m.local_flows)
        .i(MOV64_X, 2, 10, 0, 0)
        .i(ADD64_K, 2, 0, 0, -16)
        .i(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM)
        .jmp(JNE_K, 0, 0, 0, "redirect");
    // A port forward's first packet: TCP/UDP destination ports the ruleset claims.
    a.i(LDX_B, 5, 7, 23, 0)
        .jmp(JEQ_K, 5, 0, 1, "pass")
        .i(LDX_H, 5, 9, 16, 0)
        .i(STX_W, 10, 5, -20, 0)
        .map(1, m.local_ports)
        .i(MOV64_X, 2, 10, 0, 0)
        .i(ADD64_K, 2, 0, 0, -20)
        .i(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM)
        .jmp(JEQ_K, 0, 0, 0, "pass")
        .i(LDX_B, 1, 0, 0, 0)
        .i(LDX_B, 3, 7, 23, 0)
        .i(RSH64_K, 3, 0, 0, 4)
        .i(MOV64_K, 4, 0, 0, 1)
        .i(LSH64_X, 4, 3, 0, 0)
        .i(0x5f, 1, 4, 0, 0) // r1 &= r4
        .jmp(JEQ_K, 1, 0, 0, "pass");
    a.label("redirect")
        .i(LDX_W, 2, 6, 16, 0)
        .map(1, m.xsks)
        .i(MOV64_K, 3, 0, 0, XDP_PASS)
        .i(CALL, 0, 0, 0, FN_REDIRECT_MAP)
        .i(EXIT, 0, 0, 0, 0);
    a.label("pass")
        .i(MOV64_K, 0, 0, 0, XDP_PASS)
        .i(EXIT, 0, 0, 0, 0);
    // IPv6: everything not for the box (and not multicast) goes to sluice.
    a.label("ipv6")
        .i(MOV64_X, 4, 7, 0, 0)
        .i(ADD64_K, 4, 0, 0, 54)
        .jmp(JGT_X, 4, 8, 0, "pass")
        .i(LDX_B, 5, 7, 38, 0)
        .jmp(JEQ_K, 5, 0, 0xff, "pass");
    for w in 0..4i16 {
        a.i(LDX_W, 5, 7, 38 + 4 * w, 0)
            .i(STX_W, 10, 5, -32 + 4 * w, 0);
    }
    a.map(1, m.local_v6)
        .i(MOV64_X, 2, 10, 0, 0)
        .i(ADD64_K, 2, 0, 0, -32)
        .i(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM)
        .jmp(JEQ_K, 0, 0, 0, "redirect")
        .jmp(JA, 0, 0, 0, "pass");
    a.finish()
}

/// Capacity of `local_flows`: connections bound to the box's own addresses at once.
pub const MAX_LOCAL_FLOWS: u32 = 262_144;

/// The steering maps, one set for the whole process (every interface's program shares them, so a flow
/// bound on one interface is found on any).
struct SteerMaps {
    local_flows: OwnedFd,
    local_ports: OwnedFd,
    ports: Mutex<Vec<u8>>,
}

static STEER: std::sync::OnceLock<std::result::Result<SteerMaps, String>> =
    std::sync::OnceLock::new();

fn steer_maps() -> Result<&'static SteerMaps> {
    STEER
        .get_or_init(|| {
            let flows = map_create(BPF_MAP_TYPE_HASH, 16, 1, MAX_LOCAL_FLOWS, "local_flows")
                .map_err(|e| e.to_string())?;
            let ports = map_create(BPF_MAP_TYPE_ARRAY, 4, 1, 65536, "local_ports")
                .map_err(|e| e.to_string())?;
            Ok(SteerMaps {
                local_flows: flows,
                local_ports: ports,
                ports: Mutex::new(vec![0u8; 65536]),
            })
        })
        .as_ref()
        .map_err(|e| HwError::Unsupported(format!("XDP steering maps: {e}")))
}

use crate::LocalFlow;

fn flow_key(f: &LocalFlow) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[0..4].copy_from_slice(&f.local.octets());
    k[4..8].copy_from_slice(&f.remote.octets());
    k[8..10].copy_from_slice(&f.local_port.to_be_bytes());
    k[10..12].copy_from_slice(&f.remote_port.to_be_bytes());
    k[12] = f.proto;
    k
}

/// Starts (`add`) or stops sending the frames of `flow` to sluice instead of the kernel.
pub fn steer_local_flow(flow: &LocalFlow, add: bool) -> Result<()> {
    let m = steer_maps()?;
    if add {
        map_update(
            &m.local_flows,
            &flow_key(flow),
            &1u8,
            "insert into local_flows",
        )
    } else {
        let _ = map_delete(&m.local_flows, &flow_key(flow));
        Ok(())
    }
}

/// Claims TCP (`proto` 6) or UDP (17) destination ports on the box's own addresses for sluice (port
/// forwards); replaces the previous set.
pub fn steer_local_ports(ports: &[(u8, u16)]) -> Result<()> {
    let m = steer_maps()?;
    let mut want = vec![0u8; 65536];
    for &(proto, port) in ports {
        let bit = match proto {
            6 => 1,
            17 => 2,
            _ => continue,
        };
        want[u16::from_le_bytes(port.to_be_bytes()) as usize] |= bit;
    }
    let mut cur = m.ports.lock().unwrap();
    for i in 0..65536usize {
        if cur[i] != want[i] {
            map_update(&m.local_ports, &(i as u32), &want[i], "update local_ports")?;
            cur[i] = want[i];
        }
    }
    Ok(())
}

fn bpf<T>(cmd: i32, attr: &mut T) -> std::io::Result<RawFd> {
    // SAFETY: `attr` is a repr(C) prefix of union bpf_attr with all unused bytes zero, valid for the call;
    // pointers inside it reference buffers the callers keep alive.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc as RawFd)
    }
}

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    for (d, b) in n.iter_mut().zip(s.bytes().take(15)) {
        *d = b;
    }
    n
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: fd was just returned by bpf(2) and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Loads an XDP program; on failure loads it again with the verifier log on and returns the log in the error.
fn load_xdp(insns: &[Insn]) -> Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let mut load = |log_level: u32| {
        let mut a = ProgLoad {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level,
            log_size: if log_level > 0 { log.len() as u32 } else { 0 },
            log_buf: if log_level > 0 {
                log.as_mut_ptr() as u64
            } else {
                0
            },
            prog_name: name16("sluice_xsk"),
            expected_attach_type: BPF_XDP,
            ..Default::default()
        };
        bpf(BPF_PROG_LOAD, &mut a)
    };
    if let Ok(fd) = load(0) {
        return Ok(owned(fd));
    }
    let err = load(1).map(|fd| drop(owned(fd))).err();
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    Err(HwError::Bpf {
        what: "BPF_PROG_LOAD of the XDP program".into(),
        source: err.unwrap_or_else(|| std::io::Error::other("failed once, then loaded")),
        log: String::from_utf8_lossy(&log[..end]).into_owned(),
    })
}

fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> Result<OwnedFd> {
    let mut a = MapCreate {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_name: name16(name),
        ..Default::default()
    };
    bpf(BPF_MAP_CREATE, &mut a)
        .map(owned)
        .map_err(|e| HwError::Bpf {
            what: format!("BPF_MAP_CREATE {name}"),
            source: e,
            log: String::new(),
        })
}

fn map_update<K, V>(map: &OwnedFd, key: &K, value: &V, what: &str) -> Result<()> {
    let mut a = MapElem {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: value as *const V as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut a)
        .map(drop)
        .map_err(|e| HwError::Bpf {
            what: what.to_string(),
            source: e,
            log: String::new(),
        })
}

fn map_delete<K>(map: &OwnedFd, key: &K) -> std::io::Result<()> {
    let mut a = MapElem {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const K as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_DELETE_ELEM, &mut a).map(drop)
}

/// The redirect program attached to one interface, with its maps. Shared (in an `Arc`) by every AF_XDP port
/// of that interface; the program detaches when the last reference drops or the process exits (it is held
/// by a BPF link, never by a bare netlink attachment).
pub struct XdpProgram {
    ifname: String,
    ifindex: u32,
    mode: AttachMode,
    queues: u32,
    xsks: OwnedFd,
    local_v4: OwnedFd,
    local: Mutex<HashSet<Ipv4Addr>>,
    local_v6: OwnedFd,
    local6: Mutex<HashSet<Ipv6Addr>>,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field("ifname", &self.ifname)
            .field("mode", &self.mode)
            .finish()
    }
}

impl XdpProgram {
    /// Loads the program and attaches it to `ifname` (in the calling thread's namespace) in `mode`. The
    /// `local_v4` map starts with every IPv4 address of the namespace ([`crate::iface::local_ipv4_addrs`]);
    /// replace it with [`XdpProgram::set_local_addresses`].
    pub fn attach(ifname: &str, mode: AttachMode) -> Result<XdpProgram> {
        let iface = crate::iface::lookup(ifname)?;
        let queues = iface.rx_queues.max(1);
        let xsks = map_create(BPF_MAP_TYPE_XSKMAP, 4, 4, queues, "xsks")?;
        let local_v4 = map_create(BPF_MAP_TYPE_HASH, 4, 1, MAX_LOCAL_ADDRS, "local_v4")?;
        let local_v6 = map_create(BPF_MAP_TYPE_HASH, 16, 1, MAX_LOCAL_ADDRS, "local_v6")?;

        let steer = steer_maps()?;
        let prog = load_xdp(&program(&Maps {
            local_v4: local_v4.as_raw_fd(),
            local_v6: local_v6.as_raw_fd(),
            xsks: xsks.as_raw_fd(),
            local_flows: steer.local_flows.as_raw_fd(),
            local_ports: steer.local_ports.as_raw_fd(),
        }))?;

        let mut a = LinkCreate {
            prog_fd: prog.as_raw_fd() as u32,
            target_ifindex: iface.ifindex,
            attach_type: BPF_XDP,
            flags: mode.flags(),
        };
        let link = match bpf(BPF_LINK_CREATE, &mut a) {
            Ok(fd) => owned(fd),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EEXIST)) => {
                return Err(HwError::XdpAlreadyAttached(ifname.to_string()));
            }
            Err(e) => {
                return Err(HwError::Bpf {
                    what: format!(
                        "attach XDP program to {ifname} ({mode:?} mode, BPF_LINK_CREATE)"
                    ),
                    source: e,
                    log: String::new(),
                });
            }
        };
        tracing::debug!(ifname, ?mode, queues, "XDP redirect program attached");

        let prog = XdpProgram {
            ifname: ifname.to_string(),
            ifindex: iface.ifindex,
            mode,
            queues,
            xsks,
            local_v4,
            local: Mutex::new(HashSet::new()),
            local_v6,
            local6: Mutex::new(HashSet::new()),
            _prog: prog,
            _link: link,
        };
        prog.set_local_addresses(&crate::iface::local_ipv4_addrs()?)?;
        prog.set_local_addresses6(&crate::iface::local_ipv6_addrs()?)?;
        Ok(prog)
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// Number of queue slots in the `xsks` map (the interface's RX queues when attached).
    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// Replaces the set of IPv4 destinations the program leaves to the kernel stack. Additions go in
    /// before removals, so an address present in both the old and new sets never leaks to user space.
    pub fn set_local_addresses(&self, addrs: &[Ipv4Addr]) -> Result<()> {
        if addrs.len() > MAX_LOCAL_ADDRS as usize {
            return Err(HwError::Unsupported(format!(
                "more than {MAX_LOCAL_ADDRS} local addresses"
            )));
        }
        let mut cur = self.local.lock().unwrap();
        let new: HashSet<Ipv4Addr> = addrs.iter().copied().collect();
        for a in new.difference(&cur) {
            map_update(
                &self.local_v4,
                &a.octets(),
                &1u8,
                &format!("insert {a} into local_v4"),
            )?;
        }
        for a in cur.difference(&new) {
            let _ = map_delete(&self.local_v4, &a.octets());
        }
        *cur = new;
        Ok(())
    }

    /// Replaces the set of IPv6 destinations the program leaves to the kernel stack (multicast always
    /// goes there). Additions before removals, as for IPv4.
    pub fn set_local_addresses6(&self, addrs: &[Ipv6Addr]) -> Result<()> {
        if addrs.len() > MAX_LOCAL_ADDRS as usize {
            return Err(HwError::Unsupported(format!(
                "more than {MAX_LOCAL_ADDRS} local IPv6 addresses"
            )));
        }
        let mut cur = self.local6.lock().unwrap();
        let new: HashSet<Ipv6Addr> = addrs.iter().copied().collect();
        for a in new.difference(&cur) {
            map_update(
                &self.local_v6,
                &a.octets(),
                &1u8,
                &format!("insert {a} into local_v6"),
            )?;
        }
        for a in cur.difference(&new) {
            let _ = map_delete(&self.local_v6, &a.octets());
        }
        *cur = new;
        Ok(())
    }

    /// The addresses currently in `local_v6`.
    pub fn local_addresses6(&self) -> Vec<Ipv6Addr> {
        let mut v: Vec<_> = self.local6.lock().unwrap().iter().copied().collect();
        v.sort();
        v
    }

    /// The addresses currently in `local_v4`.
    pub fn local_addresses(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<_> = self.local.lock().unwrap().iter().copied().collect();
        v.sort();
        v
    }

    /// Points queue `queue` of the interface at the AF_XDP socket `fd`.
    pub(crate) fn register(&self, queue: u32, fd: RawFd) -> Result<()> {
        if queue >= self.queues {
            return Err(HwError::Unsupported(format!(
                "{} has {} RX queues, no queue {queue}",
                self.ifname, self.queues
            )));
        }
        map_update(
            &self.xsks,
            &queue,
            &(fd as u32),
            &format!("insert the socket of queue {queue} into xsks"),
        )
    }

    pub(crate) fn unregister(&self, queue: u32) {
        let _ = map_delete(&self.xsks, &queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_pass() {
        let p = program(&Maps {
            local_v4: 3,
            local_v6: 7,
            xsks: 4,
            local_flows: 5,
            local_ports: 6,
        });
        // The length check and the IPv4 ethertype check both go to `pass`: r0 = XDP_PASS; exit.
        for i in [5usize, 8] {
            let target = i + 1 + p[i].off as usize;
            assert_eq!(p[target].code, MOV64_K);
            assert_eq!(p[target].imm, XDP_PASS);
            assert_eq!(p[target + 1].code, EXIT);
        }
        // Every jump lands inside the program.
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 && ins.code != CALL && ins.code != EXIT {
                let t = i as i64 + 1 + ins.off as i64;
                assert!(t >= 0 && (t as usize) < p.len(), "jump at {i}");
            }
        }
        // The IPv6 ethertype check goes to the IPv6 block, whose first act is its own length check.
        let v6 = 7 + 1 + p[7].off as usize;
        assert_eq!((p[7].code, p[v6].code, p[v6 + 1].imm), (JEQ_K, MOV64_X, 54));
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn verifier_log_is_in_the_error() {
        if !crate::netns::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        // `exit` with r0 never written: the verifier refuses it and says why.
        let err = load_xdp(&[insn(EXIT, 0, 0, 0, 0)]).unwrap_err();
        match &err {
            HwError::Bpf { log, .. } => assert!(log.contains("R0 !read_ok"), "{err}"),
            _ => panic!("{err}"),
        }
        assert!(err.to_string().contains("verifier log"));
        // And the real program passes the verifier.
        let a = map_create(BPF_MAP_TYPE_HASH, 4, 1, 4, "t_local").unwrap();
        let a6 = map_create(BPF_MAP_TYPE_HASH, 16, 1, 4, "t_local6").unwrap();
        let x = map_create(BPF_MAP_TYPE_XSKMAP, 4, 4, 1, "t_xsks").unwrap();
        let f = map_create(BPF_MAP_TYPE_HASH, 16, 1, 4, "t_flows").unwrap();
        let p = map_create(BPF_MAP_TYPE_ARRAY, 4, 1, 65536, "t_ports").unwrap();
        let prog = program(&Maps {
            local_v4: a.as_raw_fd(),
            local_v6: a6.as_raw_fd(),
            xsks: x.as_raw_fd(),
            local_flows: f.as_raw_fd(),
            local_ports: p.as_raw_fd(),
        });
        if let Err(e) = load_xdp(&prog) {
            panic!("{e}");
        }
    }
}
