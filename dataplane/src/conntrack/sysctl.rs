//! Conntrack settings under the kernel's sysctl names (`net.netfilter.nf_conntrack_*`), with the kernel's
//! defaults. Timeouts are in seconds, as `sysctl` shows them.

/// Every knob the tracker reads. `Sysctls::default()` is the kernel's default configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysctls {
    /// `nf_conntrack_max`: entries in the whole table (all workers together).
    pub max: u32,
    /// `nf_conntrack_acct`: show per-entry packet/byte counters (they are always counted).
    pub acct: bool,
    pub tcp_loose: bool,
    pub tcp_be_liberal: bool,
    pub tcp_max_retrans: u8,
    pub tcp_ignore_invalid_rst: bool,
    pub tcp_timeout_syn_sent: u32,
    pub tcp_timeout_syn_recv: u32,
    pub tcp_timeout_established: u32,
    pub tcp_timeout_fin_wait: u32,
    pub tcp_timeout_close_wait: u32,
    pub tcp_timeout_last_ack: u32,
    pub tcp_timeout_time_wait: u32,
    pub tcp_timeout_close: u32,
    pub tcp_timeout_max_retrans: u32,
    pub tcp_timeout_unacknowledged: u32,
    pub udp_timeout: u32,
    pub udp_timeout_stream: u32,
    pub icmp_timeout: u32,
    pub icmpv6_timeout: u32,
    pub generic_timeout: u32,
}

impl Default for Sysctls {
    fn default() -> Self {
        Sysctls {
            max: 262_144,
            acct: false,
            tcp_loose: true,
            tcp_be_liberal: false,
            tcp_max_retrans: 3,
            tcp_ignore_invalid_rst: false,
            tcp_timeout_syn_sent: 120,
            tcp_timeout_syn_recv: 60,
            tcp_timeout_established: 432_000,
            tcp_timeout_fin_wait: 120,
            tcp_timeout_close_wait: 60,
            tcp_timeout_last_ack: 30,
            tcp_timeout_time_wait: 120,
            tcp_timeout_close: 10,
            tcp_timeout_max_retrans: 300,
            tcp_timeout_unacknowledged: 300,
            udp_timeout: 30,
            udp_timeout_stream: 120,
            icmp_timeout: 30,
            icmpv6_timeout: 30,
            generic_timeout: 600,
        }
    }
}

/// The prefix every name carries.
pub const PREFIX: &str = "net.netfilter.";

macro_rules! knobs {
    ($($name:literal => $field:ident : $kind:ident,)*) => {
        impl Sysctls {
            /// Every sysctl name (with the `net.netfilter.` prefix), in a stable order.
            pub const NAMES: &'static [&'static str] = &[$(concat!("net.netfilter.", $name),)*];

            /// The value of `name` (with or without the `net.netfilter.` prefix), as `sysctl` prints it.
            pub fn get(&self, name: &str) -> Option<String> {
                match name.strip_prefix(PREFIX).unwrap_or(name) {
                    $($name => Some(knobs!(@get self.$field, $kind)),)*
                    _ => None,
                }
            }

            /// Sets `name` from its text value; errors name what was wrong.
            pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
                let v = value.trim();
                match name.strip_prefix(PREFIX).unwrap_or(name) {
                    $($name => { knobs!(@set self.$field, $kind, v, name); Ok(()) })*
                    _ => Err(format!("unknown conntrack sysctl: {name}")),
                }
            }
        }
    };
    (@get $e:expr, bool) => { (if $e { "1" } else { "0" }).to_string() };
    (@get $e:expr, num) => { $e.to_string() };
    (@set $e:expr, bool, $v:expr, $n:expr) => {
        $e = match $v {
            "0" => false,
            "1" => true,
            _ => return Err(format!("{}: expected 0 or 1, got {:?}", $n, $v)),
        }
    };
    (@set $e:expr, num, $v:expr, $n:expr) => {
        $e = $v.parse().map_err(|_| format!("{}: not a number in range: {:?}", $n, $v))?
    };
}

knobs! {
    "nf_conntrack_max" => max: num,
    "nf_conntrack_acct" => acct: bool,
    "nf_conntrack_tcp_loose" => tcp_loose: bool,
    "nf_conntrack_tcp_be_liberal" => tcp_be_liberal: bool,
    "nf_conntrack_tcp_max_retrans" => tcp_max_retrans: num,
    "nf_conntrack_tcp_ignore_invalid_rst" => tcp_ignore_invalid_rst: bool,
    "nf_conntrack_tcp_timeout_syn_sent" => tcp_timeout_syn_sent: num,
    "nf_conntrack_tcp_timeout_syn_recv" => tcp_timeout_syn_recv: num,
    "nf_conntrack_tcp_timeout_established" => tcp_timeout_established: num,
    "nf_conntrack_tcp_timeout_fin_wait" => tcp_timeout_fin_wait: num,
    "nf_conntrack_tcp_timeout_close_wait" => tcp_timeout_close_wait: num,
    "nf_conntrack_tcp_timeout_last_ack" => tcp_timeout_last_ack: num,
    "nf_conntrack_tcp_timeout_time_wait" => tcp_timeout_time_wait: num,
    "nf_conntrack_tcp_timeout_close" => tcp_timeout_close: num,
    "nf_conntrack_tcp_timeout_max_retrans" => tcp_timeout_max_retrans: num,
    "nf_conntrack_tcp_timeout_unacknowledged" => tcp_timeout_unacknowledged: num,
    "nf_conntrack_udp_timeout" => udp_timeout: num,
    "nf_conntrack_udp_timeout_stream" => udp_timeout_stream: num,
    "nf_conntrack_icmp_timeout" => icmp_timeout: num,
    "nf_conntrack_icmpv6_timeout" => icmpv6_timeout: num,
    "nf_conntrack_generic_timeout" => generic_timeout: num,
}

impl Sysctls {
    /// `name = value` lines for every knob, like `sysctl net.netfilter`.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for n in Self::NAMES {
            out.push_str(&format!("{n} = {}\n", self.get(n).unwrap()));
        }
        out
    }

    /// Applies `name=value` (as on a `sysctl -w` command line).
    pub fn apply(&mut self, assignment: &str) -> Result<(), String> {
        let (n, v) = assignment
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=VALUE, got {assignment:?}"))?;
        self.set(n.trim(), v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_defaults_are_the_kernels() {
        let mut s = Sysctls::default();
        assert_eq!(
            s.get("net.netfilter.nf_conntrack_tcp_timeout_established"),
            Some("432000".into())
        );
        assert_eq!(s.get("nf_conntrack_udp_timeout_stream"), Some("120".into()));
        s.apply("net.netfilter.nf_conntrack_max=100").unwrap();
        s.apply("nf_conntrack_tcp_be_liberal = 1").unwrap();
        assert_eq!((s.max, s.tcp_be_liberal), (100, true));
        assert!(s.apply("nf_conntrack_tcp_be_liberal=2").is_err());
        assert!(s.apply("nf_conntrack_nope=2").is_err());
        assert!(s.apply("nf_conntrack_max=-1").is_err());
        assert_eq!(s.dump().lines().count(), Sysctls::NAMES.len());
    }
}
