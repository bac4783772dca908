//! PNG bar charts (plotters): per kind of traffic, kernel and sluice side by side for every scenario, median
//! bars with min–max whiskers, on a log scale (the linear-rule scenarios span three orders of magnitude).
//!
//! Text needs a TrueType font: plotters' `ab_glyph` backend is given one read at run time (DejaVu Sans from
//! Debian's fonts-dejavu-core, or any .ttf under /usr/share/fonts). Without one the plots are skipped.

use crate::report::{Metric, Row};
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const KERNEL: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const SLUICE: RGBColor = RGBColor(0xdd, 0x84, 0x52);

fn find_font() -> Option<PathBuf> {
    let preferred = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ];
    if let Some(p) = preferred.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Some(p);
    }
    fn walk(dir: &Path, depth: usize) -> Option<PathBuf> {
        let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            if p.is_dir() && depth > 0 {
                if let Some(f) = walk(&p, depth - 1) {
                    return Some(f);
                }
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("ttf")) {
                return Some(p);
            }
        }
        None
    }
    walk(Path::new("/usr/share/fonts"), 4)
}

/// Registers a font once; the error says why plots cannot be drawn.
fn ensure_font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = find_font().ok_or(
            "no TrueType font found under /usr/share/fonts (install fonts-dejavu-core)".to_string(),
        )?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{}: not a usable font", path.display()))
    })
    .clone()
}

/// Draws one PNG per kind of traffic into `dir`; returns the files written.
pub fn plots(rows: &[Row], dir: &Path, subtitle: &str) -> Result<Vec<PathBuf>> {
    ensure_font().map_err(|e| anyhow!(e))?;
    let mut files = Vec::new();
    for m in Metric::ALL {
        let rs: Vec<&Row> = rows.iter().filter(|r| r.metric == m).collect();
        if rs.is_empty() {
            continue;
        }
        let path = dir.join(format!("{}.png", m.name()));
        draw(&rs, m, &path, subtitle)?;
        files.push(path);
    }
    Ok(files)
}

fn draw(rows: &[&Row], m: Metric, path: &Path, subtitle: &str) -> Result<()> {
    let n = rows.len() as i32;
    let values = rows
        .iter()
        .flat_map(|r| [r.kernel.min, r.kernel.max, r.sluice.min, r.sluice.max])
        .flatten()
        .filter(|v| *v > 0.0);
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        (lo, hi) = (1.0, 10.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf((hi * 1.5).log10().ceil());

    let root = BitMapBackend::new(path, (260 + 110 * n as u32, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(50);
    top.draw(&Text::new(
        m.title().to_string(),
        (20, 6),
        ("sans-serif", 22).into_font(),
    ))?;
    top.draw(&Text::new(
        subtitle.to_string(),
        (20, 30),
        ("sans-serif", 14).into_font().color(&RGBColor(90, 90, 90)),
    ))?;
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0..10 * n, (lo..hi).log_scale())?;
    let names: Vec<String> = rows.iter().map(|r| r.scenario.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels((10 * n) as usize)
        .x_label_formatter(&|x| {
            if x % 10 == 5 {
                names.get((x / 10) as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(m.unit())
        .y_label_formatter(&|v| crate::report::thousands(*v as u64))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, r) in rows.iter().enumerate() {
        let base = 10 * i as i32;
        for (off, st, color) in [(1, &r.kernel, KERNEL), (5, &r.sluice, SLUICE)] {
            let Some(med) = st.median.filter(|v| *v > 0.0) else {
                continue;
            };
            chart.draw_series(std::iter::once(Rectangle::new(
                [(base + off, lo), (base + off + 4, med)],
                color.filled(),
            )))?;
            if let (Some(a), Some(b)) = (st.min, st.max) {
                let x = base + off + 2;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x, a.max(lo)), (x, b.max(lo))],
                    BLACK.stroke_width(2),
                )))?;
            }
        }
        if let Some(ratio) = r.ratio() {
            let top = r
                .kernel
                .max
                .into_iter()
                .chain(r.sluice.max)
                .fold(lo, f64::max);
            let label = if ratio >= 10.0 {
                format!("{ratio:.0}×")
            } else {
                format!("{ratio:.2}×")
            };
            chart.draw_series(std::iter::once(Text::new(
                label,
                (base + 2, top * 1.15),
                ("sans-serif", 14).into_font(),
            )))?;
        }
    }
    // Legend, drawn by hand (two swatches).
    for (k, (name, color)) in [("kernel nftables", KERNEL), ("sluice", SLUICE)]
        .into_iter()
        .enumerate()
    {
        let y = 8 + 20 * k as i32;
        let x = 120 + 110 * n - 170;
        body.draw(&Rectangle::new([(x, y), (x + 14, y + 14)], color.filled()))?;
        body.draw(&Text::new(
            name,
            (x + 20, y),
            ("sans-serif", 14).into_font(),
        ))?;
    }
    root.present()?;
    Ok(())
}
