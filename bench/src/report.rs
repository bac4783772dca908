//! Samples, medians, ratios; the CSV files and the Markdown table.

use crate::rig::Forwarder;
use std::fmt::Write;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Udp,
    Tcp,
    Cps,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Udp, Metric::Tcp, Metric::Cps];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Udp => "udp64",
            Metric::Tcp => "tcp",
            Metric::Cps => "conn",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::Udp => "pps",
            Metric::Tcp => "Gbit/s",
            Metric::Cps => "conn/s",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Metric::Udp => "64-byte UDP, packets/s at the sink",
            Metric::Tcp => "TCP throughput (iperf3, 1 stream), Gbit/s",
            Metric::Cps => "new TCP connections/s (wrk, Connection: close)",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "udp" | "udp64" => Some(Metric::Udp),
            "tcp" => Some(Metric::Tcp),
            "conn" | "cps" => Some(Metric::Cps),
            _ => None,
        }
    }

    pub fn format(self, v: f64) -> String {
        match self {
            Metric::Tcp if v < 0.1 => format!("{v:.4}"),
            Metric::Tcp => format!("{v:.2}"),
            _ => thousands(v.round() as u64),
        }
    }
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One measurement: one kind of traffic through one forwarder in one round.
#[derive(Clone, Debug)]
pub struct Sample {
    pub scenario: String,
    pub metric: Metric,
    pub fwd: Forwarder,
    pub round: usize,
    /// `None` when the run failed (the note says why).
    pub value: Option<f64>,
    /// UDP: what the generator offered, pps.
    pub offered: Option<f64>,
    /// CPU use during the window.
    pub cpu: crate::traffic::CpuUse,
    /// Time to load the ruleset on this path in this round (nft -f; sluice start to ready), seconds.
    pub load_s: f64,
    pub note: String,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub n: usize,
    pub failed: usize,
}

pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

impl Stats {
    pub fn of(values: &[Option<f64>]) -> Stats {
        let mut ok: Vec<f64> = values.iter().flatten().copied().collect();
        let failed = values.len() - ok.len();
        let min = ok.iter().copied().reduce(f64::min);
        let max = ok.iter().copied().reduce(f64::max);
        Stats {
            median: median(&mut ok),
            min,
            max,
            n: ok.len(),
            failed,
        }
    }
}

/// One line of the summary: a scenario × traffic, both forwarders.
#[derive(Clone, Debug)]
pub struct Row {
    pub scenario: String,
    pub metric: Metric,
    pub kernel: Stats,
    pub sluice: Stats,
    /// Median busy fraction per CPU over the runs, per forwarder (whole machine).
    pub cpu_kernel: Vec<f64>,
    pub cpu_sluice: Vec<f64>,
    /// Median cores' worth of CPU the forwarding used (see `traffic::CpuUse::forwarder`).
    pub fw_kernel: Option<f64>,
    pub fw_sluice: Option<f64>,
    pub offered_kernel: Option<f64>,
    pub offered_sluice: Option<f64>,
    pub load_kernel: Option<f64>,
    pub load_sluice: Option<f64>,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        match (self.sluice.median, self.kernel.median) {
            (Some(s), Some(k)) if k > 0.0 => Some(s / k),
            _ => None,
        }
    }

    /// The ratio of value per forwarder CPU-second: what each side achieves per core it spends forwarding.
    pub fn ratio_per_cpu(&self) -> Option<f64> {
        let k = self.kernel.median? / self.fw_kernel?;
        let s = self.sluice.median? / self.fw_sluice?;
        (k.is_finite() && s.is_finite() && k > 0.0).then(|| s / k)
    }
}

fn median_cpu(samples: &[&Sample]) -> Vec<f64> {
    let n = samples.iter().map(|s| s.cpu.busy.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| {
            let mut v: Vec<f64> = samples
                .iter()
                .filter(|s| s.value.is_some())
                .filter_map(|s| s.cpu.busy.get(i).copied())
                .collect();
            median(&mut v).unwrap_or(0.0)
        })
        .collect()
}

/// Summarises samples in the order scenarios first appear, traffic in [`Metric::ALL`] order.
pub fn summarize(samples: &[Sample]) -> Vec<Row> {
    let mut scenarios: Vec<String> = Vec::new();
    for s in samples {
        if !scenarios.contains(&s.scenario) {
            scenarios.push(s.scenario.clone());
        }
    }
    let mut rows = Vec::new();
    for sc in &scenarios {
        for m in Metric::ALL {
            let of = |f: Forwarder| -> Vec<&Sample> {
                samples
                    .iter()
                    .filter(|s| &s.scenario == sc && s.metric == m && s.fwd == f)
                    .collect()
            };
            let (k, s) = (of(Forwarder::Kernel), of(Forwarder::Sluice));
            if k.is_empty() && s.is_empty() {
                continue;
            }
            let vals = |v: &[&Sample]| v.iter().map(|s| s.value).collect::<Vec<_>>();
            let med = |v: &[&Sample], f: fn(&Sample) -> Option<f64>| {
                let mut x: Vec<f64> = v.iter().filter_map(|s| f(s)).collect();
                median(&mut x)
            };
            rows.push(Row {
                scenario: sc.clone(),
                metric: m,
                kernel: Stats::of(&vals(&k)),
                sluice: Stats::of(&vals(&s)),
                cpu_kernel: median_cpu(&k),
                cpu_sluice: median_cpu(&s),
                fw_kernel: med(&k, |s| s.value.map(|_| s.cpu.forwarder)),
                fw_sluice: med(&s, |s| s.value.map(|_| s.cpu.forwarder)),
                offered_kernel: med(&k, |s| s.offered),
                offered_sluice: med(&s, |s| s.offered),
                // Only runs that measured something: a failed start has no load time.
                load_kernel: med(&k, |s| s.value.map(|_| s.load_s)),
                load_sluice: med(&s, |s| s.value.map(|_| s.load_s)),
            });
        }
    }
    rows
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\"").replace('\n', " "))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.6}")).unwrap_or_default()
}

pub fn runs_csv(samples: &[Sample]) -> String {
    let mut out = String::from(
        "scenario,traffic,unit,forwarder,round,value,offered_pps,forwarder_cores,cpu_busy,cpu_softirq,ruleset_load_s,note\n",
    );
    for s in samples {
        let fr = |v: &[f64]| {
            v.iter()
                .map(|c| format!("{c:.3}"))
                .collect::<Vec<_>>()
                .join("/")
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{:.3},{},{},{:.3},{}",
            s.scenario,
            s.metric.name(),
            csv_field(s.metric.unit()),
            s.fwd.name(),
            s.round,
            opt(s.value),
            opt(s.offered),
            s.cpu.forwarder,
            fr(&s.cpu.busy),
            fr(&s.cpu.softirq),
            s.load_s,
            csv_field(&s.note)
        );
    }
    out
}

/// Splits one CSV line (fields quoted as [`csv_field`] writes them).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// Reads samples back from a `runs.csv` written by [`runs_csv`] (to merge runs of separate invocations).
pub fn parse_runs_csv(text: &str) -> Result<Vec<Sample>, String> {
    let mut lines = text.lines();
    let header = split_csv(lines.next().ok_or("empty runs.csv")?);
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or(format!("runs.csv has no column {name}"))
    };
    let (sc, tr, fw, ro, va, of, fc, cb, cs, ld, no) = (
        col("scenario")?,
        col("traffic")?,
        col("forwarder")?,
        col("round")?,
        col("value")?,
        col("offered_pps")?,
        col("forwarder_cores")?,
        col("cpu_busy")?,
        col("cpu_softirq")?,
        col("ruleset_load_s")?,
        col("note")?,
    );
    let fracs = |s: &str| -> Vec<f64> { s.split('/').filter_map(|x| x.parse().ok()).collect() };
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let f = split_csv(line);
        let get = |k: usize| f.get(k).map(String::as_str).unwrap_or("");
        let metric =
            Metric::parse(get(tr)).ok_or(format!("line {}: traffic {:?}", i + 2, get(tr)))?;
        let fwd = match get(fw) {
            "kernel" => Forwarder::Kernel,
            "sluice" => Forwarder::Sluice,
            other => return Err(format!("line {}: forwarder {other:?}", i + 2)),
        };
        out.push(Sample {
            scenario: get(sc).to_string(),
            metric,
            fwd,
            round: get(ro).parse().unwrap_or(0),
            value: get(va).parse().ok(),
            offered: get(of).parse().ok(),
            cpu: crate::traffic::CpuUse {
                busy: fracs(get(cb)),
                softirq: fracs(get(cs)),
                forwarder: get(fc).parse().unwrap_or(0.0),
            },
            load_s: get(ld).parse().unwrap_or(0.0),
            note: get(no).to_string(),
        });
    }
    Ok(out)
}

pub fn summary_csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "scenario,traffic,unit,kernel_median,kernel_min,kernel_max,kernel_n,sluice_median,sluice_min,sluice_max,sluice_n,ratio,kernel_forwarder_cores,sluice_forwarder_cores,ratio_per_forwarder_cpu_second,kernel_cpu_busy,sluice_cpu_busy,kernel_load_s,sluice_load_s\n",
    );
    for r in rows {
        let cpu = |v: &[f64]| {
            v.iter()
                .map(|c| format!("{c:.3}"))
                .collect::<Vec<_>>()
                .join("/")
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.scenario,
            r.metric.name(),
            csv_field(r.metric.unit()),
            opt(r.kernel.median),
            opt(r.kernel.min),
            opt(r.kernel.max),
            r.kernel.n,
            opt(r.sluice.median),
            opt(r.sluice.min),
            opt(r.sluice.max),
            r.sluice.n,
            opt(r.ratio()),
            opt(r.fw_kernel),
            opt(r.fw_sluice),
            opt(r.ratio_per_cpu()),
            cpu(&r.cpu_kernel),
            cpu(&r.cpu_sluice),
            opt(r.load_kernel),
            opt(r.load_sluice),
        );
    }
    out
}

fn cell(m: Metric, s: &Stats) -> String {
    match (s.median, s.min, s.max) {
        (Some(med), Some(lo), Some(hi)) if s.n > 1 => {
            let mut c = format!("{} ({}–{})", m.format(med), m.format(lo), m.format(hi));
            if s.failed > 0 {
                let _ = write!(c, ", {} failed", s.failed);
            }
            c
        }
        (Some(med), _, _) => {
            let mut c = m.format(med);
            if s.failed > 0 {
                let _ = write!(c, ", {} failed", s.failed);
            }
            c
        }
        _ if s.failed > 0 => format!("failed ×{}", s.failed),
        _ => "–".into(),
    }
}

fn cpu_cell(v: &[f64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    v.iter()
        .map(|c| format!("{:.0}", c * 100.0))
        .collect::<Vec<_>>()
        .join(" / ")
        + " %"
}

fn ratio_cell(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 10.0 => format!("**{r:.0}×**"),
        Some(r) => format!("**{r:.2}×**"),
        None => "–".into(),
    }
}

/// The results table (Markdown), one per kind of traffic, and the skipped scenarios.
pub fn markdown(rows: &[Row], skipped: &[(String, String)], cpu_names: &str) -> String {
    let mut out = String::new();
    for m in Metric::ALL {
        let rs: Vec<&Row> = rows.iter().filter(|r| r.metric == m).collect();
        if rs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "#### {}\n", m.title());
        let _ = writeln!(
            out,
            "| scenario | kernel | sluice | sluice/kernel | forwarder cores, kernel / sluice | ratio per forwarder CPU-second | machine busy {cpu_names}, kernel; sluice |"
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for r in rs {
            let cores = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} / {} | {} | {}; {} |",
                r.scenario,
                cell(m, &r.kernel),
                cell(m, &r.sluice),
                ratio_cell(r.ratio()),
                cores(r.fw_kernel),
                cores(r.fw_sluice),
                r.ratio_per_cpu()
                    .map(|x| format!("{x:.2}×"))
                    .unwrap_or_else(|| "–".into()),
                cpu_cell(&r.cpu_kernel),
                cpu_cell(&r.cpu_sluice),
            );
        }
        if m == Metric::Udp {
            let offered: Vec<String> = rows
                .iter()
                .filter(|r| r.metric == Metric::Udp)
                .map(|r| {
                    format!(
                        "{} {}/{}",
                        r.scenario,
                        r.offered_kernel
                            .map(|v| thousands(v as u64))
                            .unwrap_or("–".into()),
                        r.offered_sluice
                            .map(|v| thousands(v as u64))
                            .unwrap_or("–".into())
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "\nOffered by trafgen (pps, kernel/sluice runs): {}.",
                offered.join("; ")
            );
        }
        out.push('\n');
    }
    let loads: Vec<&Row> = rows.iter().filter(|r| r.metric == Metric::ALL[0]).collect();
    if !loads.is_empty() {
        out.push_str("#### Ruleset load time (median)\n\n| scenario | `nft -f` (kernel) | sluice start → ready |\n|---|---:|---:|\n");
        for r in loads {
            let f = |v: Option<f64>| {
                v.map(|s| format!("{:.2} s", s))
                    .unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                r.scenario,
                f(r.load_kernel),
                f(r.load_sluice)
            );
        }
        out.push('\n');
    }
    if !skipped.is_empty() {
        out.push_str("Skipped scenarios:\n\n");
        for (name, why) in skipped {
            let _ = writeln!(out, "- `{name}`: {why}");
        }
        out.push('\n');
    }
    out
}

/// Replaces the text between `<!-- bench:results:start -->` and `<!-- bench:results:end -->` in `doc`.
pub fn update_doc(doc: &Path, text: &str) -> std::io::Result<bool> {
    update_doc_section(doc, "results", text)
}

/// Replaces the text between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->` of a Markdown file;
/// `Ok(false)` when the markers are missing.
pub fn update_doc_section(doc: &Path, name: &str, text: &str) -> std::io::Result<bool> {
    let start = format!("<!-- bench:{name}:start -->");
    let end = format!("<!-- bench:{name}:end -->");
    let old = std::fs::read_to_string(doc)?;
    let (Some(a), Some(b)) = (old.find(&start), old.find(&end)) else {
        return Ok(false);
    };
    if b < a {
        return Ok(false);
    }
    let new = format!("{}{start}\n{text}{}", &old[..a], &old[b..]);
    std::fs::write(doc, new)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sc: &str, f: Forwarder, v: Option<f64>, busy: Vec<f64>) -> Sample {
        let forwarder = busy[1];
        Sample {
            scenario: sc.into(),
            metric: Metric::Udp,
            fwd: f,
            round: 0,
            value: v,
            offered: Some(1000.0),
            cpu: crate::traffic::CpuUse {
                busy,
                softirq: vec![0.0, 0.0],
                forwarder,
            },
            load_s: 0.1,
            note: String::new(),
        }
    }

    #[test]
    fn medians_and_ratios() {
        let s = vec![
            sample("none", Forwarder::Kernel, Some(100.0), vec![1.0, 0.5]),
            sample("none", Forwarder::Kernel, Some(300.0), vec![1.0, 0.5]),
            sample("none", Forwarder::Kernel, Some(200.0), vec![1.0, 0.5]),
            sample("none", Forwarder::Sluice, Some(400.0), vec![1.0, 1.0]),
            sample("none", Forwarder::Sluice, None, vec![1.0, 1.0]),
        ];
        let rows = summarize(&s);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.kernel.median, Some(200.0));
        assert_eq!(r.sluice.median, Some(400.0));
        assert_eq!(r.sluice.failed, 1);
        assert_eq!(r.ratio(), Some(2.0));
        // per forwarder CPU-second: kernel 200/0.5, sluice 400/1
        assert_eq!(r.ratio_per_cpu(), Some(1.0));
        let md = markdown(&rows, &[("set-1M".into(), "no sets".into())], "0/1");
        assert!(md.contains("| none | 200 (100–300) | 400, 1 failed | **2.00×**"));
        assert!(md.contains("`set-1M`: no sets"));
        let csv = summary_csv(&rows);
        assert_eq!(csv.lines().count(), 2);
        let mut s2 = s.clone();
        s2[4].note = "failed: \"x\", y".into();
        let back = parse_runs_csv(&runs_csv(&s2)).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back[4].note, s2[4].note);
        assert_eq!(back[4].value, None);
        assert_eq!(back[0].value, Some(100.0));
        assert_eq!(back[0].cpu.busy, vec![1.0, 0.5]);
        assert_eq!(summarize(&back)[0].ratio(), Some(2.0));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn even_median() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
