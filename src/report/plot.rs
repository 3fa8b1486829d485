//! Val-loss plots: loss vs step and loss vs train time (two panels, one line per run, target as
//! a dashed horizontal line). SVG or PNG chosen by the output file's extension.
use super::comparison::Comparison;
use super::load::RunRecord;
use anyhow::{anyhow, bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Image size in pixels (two panels side by side).
pub const SIZE: (u32, u32) = (1400, 560);

/// DejaVu Sans (Bitstream Vera license, see data/fonts/DejaVu.LICENSE.txt). plotters' `ab_glyph`
/// text backend has no system-font lookup: every family it draws must be registered first.
static FONT: &[u8] = include_bytes!("../../data/fonts/DejaVuSans.ttf");

fn register_font() -> Result<()> {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        bail!("data/fonts/DejaVuSans.ttf: embedded font is not a valid TrueType font")
    }
}

/// Tableau-10 colours: distinguishable and colour-blind friendlier than plotters' palette.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

struct Line {
    label: String,
    by_step: Vec<(f64, f64)>,
    by_time: Vec<(f64, f64)>,
    /// Val loss after step 0 (the initial ≈ ln(vocab) ≈ 10.8 loss says nothing about the
    /// optimizer); used for the y range so the region near the target stays readable.
    trained: Vec<f64>,
}

/// Which unit the time axis uses: minutes once runs are long enough that seconds get unwieldy.
fn time_unit(max_ms: f64) -> (f64, &'static str) {
    if max_ms > 600_000.0 {
        (60_000.0, "train time (min)")
    } else {
        (1_000.0, "train time (s)")
    }
}

fn lines(runs: &[RunRecord], time_div: f64) -> Vec<Line> {
    runs.iter()
        .filter(|r| !r.val.is_empty())
        .map(|r| {
            // A diverged (NaN / inf) val loss has no place on the axes: the line stops there.
            let val: Vec<_> = r.val.iter().filter(|v| v.val_loss.is_finite()).collect();
            Line {
                label: r.name.clone(),
                by_step: val.iter().map(|v| (v.step as f64, v.val_loss)).collect(),
                by_time: val
                    .iter()
                    .map(|v| (v.train_time_ms / time_div, v.val_loss))
                    .collect(),
                trained: val
                    .iter()
                    .filter(|v| v.step > 0)
                    .map(|v| v.val_loss)
                    .collect(),
            }
        })
        .collect()
}

/// (lo, hi) of an iterator, padded by `pad` of the span (a flat series gets a unit span).
fn range(xs: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
        (l.min(x), h.max(x))
    });
    let span = if hi > lo { hi - lo } else { 1.0 };
    (lo - pad * span, hi + pad * span)
}

/// Split a polyline at the top edge `y_hi`: points above it are replaced by the crossing points,
/// so a clipped line leaves the chart at the right slope (plotters clamps out-of-range points to
/// the edge instead, which bends the line).
pub(crate) fn clip_top(pts: &[(f64, f64)], y_hi: f64) -> Vec<Vec<(f64, f64)>> {
    let cross = |a: (f64, f64), b: (f64, f64)| {
        let f = (y_hi - a.1) / (b.1 - a.1);
        (a.0 + f * (b.0 - a.0), y_hi)
    };
    let mut pieces: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (i, &p) in pts.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| pts[j]);
        match (p.1 <= y_hi, prev) {
            // Coming back in from above: start at the crossing.
            (true, Some(q)) if q.1 > y_hi => pieces.last_mut().unwrap().push(cross(q, p)),
            // Leaving through the top: end at the crossing, start a new piece.
            (false, Some(q)) if q.1 <= y_hi => {
                pieces.last_mut().unwrap().push(cross(q, p));
                pieces.push(Vec::new());
            }
            _ => {}
        }
        if p.1 <= y_hi {
            pieces.last_mut().unwrap().push(p);
        }
    }
    pieces.retain(|p| !p.is_empty());
    pieces
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    data: &[(&str, &[(f64, f64)])],
    target: Option<f64>,
    (y0, y1): (f64, f64),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {title}: {e}");
    let (x0, x1) = range(data.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)), 0.02);
    let x0 = x0.max(0.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("val loss")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (label, pts)) in data.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = color.stroke_width(2);
        chart
            .draw_series(
                clip_top(pts, y1)
                    .into_iter()
                    .map(move |piece| PathElement::new(piece, style)),
            )
            .map_err(|e| err(&e))?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        let inside = pts.iter().filter(|p| p.1 <= y1);
        chart
            .draw_series(inside.map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    if let Some(t) = target {
        let style = BLACK.mix(0.8).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(vec![(x0, t), (x1, t)], 10, 7, style))
            .map_err(|e| err(&e))?
            .label(format!("target {t}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 9, y)], style));
    }
    // Loss curves fall from the upper left, so the upper right corner is the emptiest place.
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[RunRecord],
    target: Option<f64>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    register_font()?;
    let max_ms = runs
        .iter()
        .flat_map(|r| r.val.iter().map(|v| v.train_time_ms))
        .fold(0.0, f64::max);
    let (div, time_desc) = time_unit(max_ms);
    let lines = lines(runs, div);
    if lines.is_empty() {
        bail!("no run has a val record yet: nothing to plot");
    }
    root.fill(&WHITE).map_err(|e| anyhow!("drawing: {e}"))?;
    let panels = root.split_evenly((1, 2));
    let by_step: Vec<(&str, &[(f64, f64)])> = lines
        .iter()
        .map(|l| (l.label.as_str(), l.by_step.as_slice()))
        .collect();
    let by_time: Vec<(&str, &[(f64, f64)])> = lines
        .iter()
        .map(|l| (l.label.as_str(), l.by_time.as_slice()))
        .collect();
    // Shared y range from the trained points (all points when only step 0 exists), so both
    // panels read alike; the step-0 segment leaves through the top edge.
    let trained: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.trained.iter().copied())
        .collect();
    let ys: Vec<f64> = if trained.is_empty() {
        lines
            .iter()
            .flat_map(|l| l.by_step.iter().map(|p| p.1))
            .collect()
    } else {
        trained
    };
    let yr = range(ys.into_iter().chain(target), 0.06);
    panel(&panels[0], "val loss vs step", "step", &by_step, target, yr)?;
    panel(
        &panels[1],
        "val loss vs train time",
        time_desc,
        &by_time,
        target,
        yr,
    )?;
    root.present().map_err(|e| anyhow!("writing plot: {e}"))?;
    Ok(())
}

/// The plot as an SVG document (for `--plot x.svg` and the inline plot of `--html`).
pub fn plot_svg_string(runs: &[RunRecord], target: Option<f64>) -> Result<String> {
    let mut buf = String::new();
    draw(
        SVGBackend::with_string(&mut buf, SIZE).into_drawing_area(),
        runs,
        target,
    )?;
    Ok(buf)
}

/// The plot format of `path`: its extension, `svg` or `png` (case-insensitive), else an error.
/// Checked before any work, so a bad name fails at once.
pub fn plot_format(path: &Path) -> Result<&'static str> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "svg" => Ok("svg"),
        "png" => Ok("png"),
        _ => bail!(
            "{}: unsupported plot format (use a .svg or .png file name)",
            path.display()
        ),
    }
}

/// Write the plot to `path`: `.svg` or `.png` (case-insensitive), else an error.
pub fn plot_runs(runs: &[RunRecord], target: Option<f64>, path: &Path) -> Result<()> {
    let ctx = |e: anyhow::Error| anyhow!("{}: {e:#}", path.display());
    match plot_format(path)? {
        "svg" => {
            let svg = plot_svg_string(runs, target).map_err(ctx)?;
            crate::fsutil::write_atomic(path, svg.as_bytes())
        }
        _ => {
            // png. BitMapBackend panics on a missing parent dir only at present(); check up front.
            if let Some(p) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !p.is_dir() {
                    bail!(
                        "{}: directory {} does not exist",
                        path.display(),
                        p.display()
                    );
                }
            }
            draw(
                BitMapBackend::new(path, SIZE).into_drawing_area(),
                runs,
                target,
            )
            .map_err(ctx)
        }
    }
}

impl Comparison<'_> {
    /// Write the plot of the compared runs, with the comparison's target, to `path`.
    pub fn plot(&self, path: &Path) -> Result<()> {
        plot_runs(self.runs, self.target, path)
    }
}
