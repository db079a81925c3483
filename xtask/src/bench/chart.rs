//! The SVG chart: one horizontal stacked bar per case, a segment per phase (medians),
//! then the `git status` that followed. A second panel zooms on the fast cases, which
//! a full clone would otherwise squash into slivers.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::measure::CaseResult;
use super::report::Results;

const STATUS: &str = "git status after";

fn color(phase: &str) -> RGBColor {
    match phase {
        "snapshot_lookup" => RGBColor(0xd4, 0xa6, 0xc8),
        "provision" => RGBColor(0x4e, 0x79, 0xa7),
        "connect" => RGBColor(0xaf, 0x7a, 0xa1),
        "fetch" => RGBColor(0x59, 0xa1, 0x4f),
        "checkout" => RGBColor(0xe1, 0x57, 0x59),
        "git_other" => RGBColor(0x9c, 0x75, 0x5f),
        "git_clone" => RGBColor(0xc0, 0x40, 0x40),
        "git_sync" => RGBColor(0x3d, 0x80, 0x3a),
        "setup" => RGBColor(0xed, 0xc9, 0x48),
        "snapshot" => RGBColor(0xb0, 0x7a, 0xa1),
        "build" => RGBColor(0xff, 0x9d, 0xa7),
        "git" => RGBColor(0xf2, 0x8e, 0x2b),
        "container" => RGBColor(0x76, 0xb7, 0xb2),
        "process" => RGBColor(0x8c, 0x8c, 0x8c),
        STATUS => RGBColor(0xd9, 0xd9, 0xd9),
        _ => RGBColor(0x79, 0x70, 0x6e),
    }
}

/// The bar segments of one case: (phase, from ms, to ms).
fn segments(c: &CaseResult) -> Vec<(String, f64, f64)> {
    let mut x = 0.0;
    let mut out = Vec::new();
    for (name, v) in &c.phases {
        out.push((name.clone(), x, x + v));
        x += v;
    }
    if let Some(s) = c.status {
        out.push((STATUS.to_owned(), x, x + s.median));
    }
    out
}

fn short(label: &str) -> String {
    let l = label.replace("headstart ", "");
    if l.chars().count() > 58 {
        let cut: String = l.chars().take(56).collect();
        format!("{cut}…")
    } else {
        l
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn panel(area: &Area<'_>, cases: &[&CaseResult], title: &str) -> anyhow::Result<()> {
    let err = |e: DrawingAreaErrorKind<std::io::Error>| anyhow!("drawing the chart: {e}");
    if cases.is_empty() {
        return Ok(());
    }
    let n = cases.len();
    let max = cases
        .iter()
        .map(|c| segments(c).last().map_or(0.0, |s| s.2))
        .fold(1.0_f64, f64::max);
    // Segment 0 is at the bottom: reverse so the first case is drawn at the top.
    let cases: Vec<&CaseResult> = cases.iter().rev().copied().collect();
    let labels: Vec<String> = cases.iter().map(|c| short(&c.label)).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(400)
        .build_cartesian_2d(0f64..max * 1.45, (0..n).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                labels.get(*i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .x_desc("milliseconds (median of the repetitions)")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let mut names: Vec<String> = Vec::new();
    for c in &cases {
        for (name, _, _) in segments(c) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    for name in &names {
        let col = color(name);
        let mut rects = Vec::new();
        for (i, c) in cases.iter().enumerate() {
            for (seg, x0, x1) in segments(c) {
                if &seg == name && x1 > x0 {
                    let mut r = Rectangle::new(
                        [
                            (x0, SegmentValue::Exact(i)),
                            (x1, SegmentValue::Exact(i + 1)),
                        ],
                        col.filled(),
                    );
                    r.set_margin(4, 4, 0, 0);
                    rects.push(r);
                }
            }
        }
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], col.filled()));
    }
    for (i, c) in cases.iter().enumerate() {
        let end = segments(c).last().map_or(0.0, |s| s.2);
        let total = c.total.map_or(0.0, |t| t.median);
        let mut text = if total >= 1000.0 {
            format!(" {:.2} s", total / 1e3)
        } else {
            format!(" {total:.1} ms")
        };
        if let Some(s) = c.status {
            text.push_str(&format!(" (+ status {:.1} ms)", s.median));
        }
        chart
            .draw_series(std::iter::once(Text::new(
                text,
                (end, SegmentValue::CenterOf(i)),
                ("sans-serif", 12),
            )))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Draws the phases chart of `r` to `path`.
pub(crate) fn draw(r: &Results, path: &Path) -> anyhow::Result<()> {
    let cases: Vec<&CaseResult> = r
        .cases
        .iter()
        .filter(|c| c.skipped.is_none() && c.total.is_some())
        .collect();
    let max = cases
        .iter()
        .filter_map(|c| c.median())
        .fold(0.0_f64, f64::max);
    let fast: Vec<&CaseResult> = cases
        .iter()
        .copied()
        .filter(|c| c.median().is_some_and(|m| m <= max / 8.0))
        .collect();
    let row = 30u32;
    let h_all = 120 + row * cases.len() as u32;
    let h_fast = if fast.is_empty() {
        0
    } else {
        120 + row * fast.len() as u32
    };
    let root = SVGBackend::new(path, (1400, h_all + h_fast)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow!("drawing the chart: {e}"))?;
    let (top, bottom) = root.split_vertically(h_all);
    panel(
        &top,
        &cases,
        &format!(
            "headstart startup phases, fixture {} ({} files, {} commits): every case",
            r.fixture.name, r.fixture.files_at_tip, r.fixture.commits
        ),
    )?;
    if !fast.is_empty() {
        panel(
            &bottom,
            &fast,
            &format!("zoom: cases under {:.0} ms", max / 8.0),
        )?;
    }
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}
