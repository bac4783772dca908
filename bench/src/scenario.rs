//! The comparison's scenarios: a ruleset, where the traffic goes, and whether sluice can run it yet.

use crate::{support, SRV_ADDR, VIP};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An accept-all forward chain.
    None,
    /// docs/examples/lab.nft (+ the bench's UDP and iperf3 ports).
    Lab,
    /// `n` linear `ip saddr` rules matching nothing, then accept.
    Linear(usize),
    /// One `ip saddr @blk drop` rule against an `n`-element set.
    Set(usize),
    /// Masquerade towards the sink.
    Masquerade,
    /// A VIP spread over two back ends with `dnat to numgen`.
    Vip,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub kind: Kind,
}

fn short(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

impl Scenario {
    pub fn new(kind: Kind) -> Scenario {
        let name = match kind {
            Kind::None => "none".to_string(),
            Kind::Lab => "lab".to_string(),
            Kind::Linear(n) => format!("linear-{}", short(n)),
            Kind::Set(n) => format!("set-{}", short(n)),
            Kind::Masquerade => "masquerade".to_string(),
            Kind::Vip => "vip".to_string(),
        };
        Scenario { name, kind }
    }

    /// Every scenario of the full comparison, in report order.
    pub fn all() -> Vec<Scenario> {
        [
            Kind::None,
            Kind::Lab,
            Kind::Linear(1_000),
            Kind::Linear(10_000),
            Kind::Linear(100_000),
            Kind::Set(10_000),
            Kind::Set(1_000_000),
            Kind::Masquerade,
            Kind::Vip,
        ]
        .into_iter()
        .map(Scenario::new)
        .collect()
    }

    /// The `--quick` subset: seconds, not minutes.
    pub fn quick() -> Vec<Scenario> {
        [Kind::None, Kind::Lab]
            .into_iter()
            .map(Scenario::new)
            .collect()
    }

    /// A human description for the report.
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::None => "accept-all forward chain".into(),
            Kind::Lab => "lab gateway (docs/examples/lab.nft + UDP 9 and TCP 5201 admitted)".into(),
            Kind::Linear(n) => format!("{n} linear `ip saddr` rules, none matching, then accept"),
            Kind::Set(n) => format!("`ip saddr @blk drop`, {n}-element set"),
            Kind::Masquerade => "masquerade towards the sink".into(),
            Kind::Vip => "VIP 203.0.113.10 → 2 back ends (dnat to numgen)".into(),
        }
    }

    pub fn ruleset(&self) -> Result<String, String> {
        Ok(match self.kind {
            Kind::None => crate::accept_all_ruleset(),
            Kind::Lab => crate::lab_bench_ruleset()?,
            Kind::Linear(n) => crate::linear_saddr_ruleset(n),
            Kind::Set(n) => crate::set_saddr_ruleset(n),
            Kind::Masquerade => crate::masquerade_ruleset(),
            Kind::Vip => crate::vip_ruleset(),
        })
    }

    /// The destination address of the scenario's traffic.
    pub fn target(&self) -> [u8; 4] {
        match self.kind {
            Kind::Vip => VIP,
            _ => SRV_ADDR,
        }
    }

    /// `Ok` when sluice's dataplane supports what the scenario needs, else the reason it is skipped.
    pub fn sluice_support(&self) -> Result<(), String> {
        match self.kind {
            Kind::None | Kind::Lab | Kind::Linear(_) => Ok(()),
            Kind::Set(_) => support::named_sets().map_err(|e| format!("named sets: {e}")),
            Kind::Masquerade => support::masquerade().map_err(|e| format!("masquerade: {e}")),
            Kind::Vip => support::load_balanced_vip().map_err(|e| format!("dnat/numgen: {e}")),
        }
    }

    /// Looks a scenario up by name (as printed in the report).
    pub fn by_name(name: &str) -> Option<Scenario> {
        Scenario::all().into_iter().find(|s| s.name == name)
    }
}
