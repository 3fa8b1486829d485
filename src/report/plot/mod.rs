//! Static plots (`--plot`, SVG or PNG): a val-loss panel and a train-loss panel (smoothed, raw
//! faint) against step, tokens or train time, and below them, when the runs logged optimizer
//! diagnostics, the gradient's `nuc_fro_ratio` and `stable_rank` (medians over the matrices);
//! each seed group with n ≥ 2 as its mean with a ± sd band, the target as a dashed line and the
//! legend in a column of its own. Drawn with plotters
//! as SVG; a PNG is that SVG rasterised by resvg with the same embedded font, so both formats
//! read alike (plotters' own bitmap text backend misplaces glyphs: "adam w", "0. 0036").
mod legend;
mod panel;
pub mod tuning;

use super::comparison::Comparison;
use super::jsonl::MEDIAN_FIELDS;
use super::series::{Curve, Entries, Entry, XAxis};
use super::ticks::x_unit;
use anyhow::{anyhow, bail, Context, Result};
use legend::{Item, Swatch};
use panel::{Band, Line, Panel};
use plotters::prelude::*;
use std::path::Path;

/// The EMA weight of the train-loss curves unless `--smooth` says otherwise.
pub const DEFAULT_SMOOTH: f64 = 0.9;

/// Width of one panel in pixels.
const PANEL_W: u32 = 620;
const MIN_H: u32 = 520;

/// DejaVu Sans (Bitstream Vera license, see data/fonts/DejaVu.LICENSE.txt). plotters' `ab_glyph`
/// text backend has no system-font lookup: every family it measures must be registered first.
/// The SVG names DejaVu Sans first and lets a viewer without it fall back to its sans-serif.
pub(crate) static FONT: &[u8] = include_bytes!("../../../data/fonts/DejaVuSans.ttf");
pub(crate) const FAMILY: &str = "DejaVu Sans, sans-serif";

fn register_font() -> Result<()> {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        bail!("data/fonts/DejaVuSans.ttf: embedded font is not a valid TrueType font")
    }
}

/// How to draw a plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotOpts {
    pub x: XAxis,
    pub log_y: bool,
    /// EMA weight of the smoothed train loss, in [0, 1).
    pub smooth: f64,
}

impl Default for PlotOpts {
    fn default() -> Self {
        PlotOpts {
            x: XAxis::Step,
            log_y: false,
            smooth: DEFAULT_SMOOTH,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotFormat {
    Svg,
    Png,
}

/// The plot format of `path`: its extension, `svg` or `png` (case-insensitive), else an error.
pub fn plot_format(path: &Path) -> Result<PlotFormat> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "svg" => Ok(PlotFormat::Svg),
        "png" => Ok(PlotFormat::Png),
        _ => bail!(
            "{}: unsupported plot format (use a .svg or .png file name)",
            path.display()
        ),
    }
}

/// An output file's directory must exist; checked before any work, so a bad path fails at once.
pub fn check_out_dir(path: &Path) -> Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) if !p.is_dir() => bail!(
            "{}: directory {} does not exist",
            path.display(),
            p.display()
        ),
        _ => Ok(()),
    }
}

/// The line of `curve` on `axis` in display units (points without an x left out).
fn xy(curve: &Curve, axis: XAxis, div: f64) -> Vec<(f64, f64)> {
    curve
        .iter()
        .filter_map(|p| Some((axis.x(p)? / div, p.y)))
        .collect()
}

fn band(e: &Entry, curve: &Curve, axis: XAxis, div: f64) -> Option<Band> {
    let pts: Vec<(f64, f64, f64)> = curve
        .iter()
        .filter_map(|p| Some((axis.x(p)? / div, p.band?.0, p.band?.1)))
        .collect();
    (!pts.is_empty()).then_some(Band {
        color: e.color,
        pts,
    })
}

/// The loss panels, the diagnostics panels (none when no run has `diag` records) and the legend
/// items of the comparison.
fn layout(cmp: &Comparison, entries: &Entries, opts: &PlotOpts) -> (Vec<Panel>, Vec<Item>) {
    let shown = entries.grouped();
    let axis = opts.x;
    let max_raw = shown
        .iter()
        .flat_map(|e| e.val.iter().chain(&e.train))
        .filter_map(|p| axis.x(p))
        .fold(0.0, f64::max);
    let (div, x_desc) = x_unit(axis, max_raw);
    let panel = |title: String, y_desc, target, empty_note| Panel {
        title,
        x_desc: x_desc.to_string(),
        y_desc,
        lines: Vec::new(),
        bands: Vec::new(),
        marks: Vec::new(),
        target,
        log_y: opts.log_y,
        log_x: false,
        empty_note,
    };
    let mut val = panel(
        "val loss".into(),
        "val loss",
        cmp.target,
        "no val records yet",
    );
    let title = format!(
        "train loss: {} (EMA {}, raw faint)",
        entries.train_basis.describe(),
        entries.smooth
    );
    let mut train = panel(title, "train loss", None, "no train records yet");
    let mut diag: Vec<Panel> = MEDIAN_FIELDS
        .iter()
        .map(|(field, _)| {
            let title = format!("gradient {field}, median over matrices");
            panel(title, field, None, "no diag records")
        })
        .collect();
    for e in &shown {
        let line = |c: &Curve, alpha, width, dots| Line {
            color: e.color,
            alpha,
            width,
            pts: xy(c, axis, div),
            dots,
        };
        val.lines.push(line(&e.val, 1.0, 2, e.val.len() <= 60));
        train.lines.push(line(&e.train, 0.22, 1, false));
        train.lines.push(line(&e.train_ema, 1.0, 2, false));
        val.bands.extend(band(e, &e.val, axis, div));
        train.bands.extend(band(e, &e.train_ema, axis, div));
        for (p, c) in diag.iter_mut().zip(&e.diag) {
            p.lines.push(line(c, 1.0, 2, c.len() <= 60));
            p.bands.extend(band(e, c, axis, div));
        }
    }
    let mut panels = vec![val, train];
    if diag
        .iter()
        .any(|p| p.lines.iter().any(|l| !l.pts.is_empty()))
    {
        panels.append(&mut diag);
    }
    (panels, legend_items(cmp, &shown, axis))
}

/// One legend row per shown entry, then the target and the runs the x axis has no values for.
fn legend_items(cmp: &Comparison, shown: &[&Entry], axis: XAxis) -> Vec<Item> {
    let mut items: Vec<Item> = shown
        .iter()
        .map(|e| Item {
            swatch: if e.runs.len() > 1 {
                Swatch::Band(e.color)
            } else {
                Swatch::Line(e.color)
            },
            label: e.label.clone(),
        })
        .collect();
    if let Some(t) = cmp.target {
        items.push(Item {
            swatch: Swatch::Dashed,
            label: format!("target {t}"),
        });
    }
    let no_x: Vec<&str> = shown
        .iter()
        .filter(|e| e.val.iter().chain(&e.train).any(|p| axis.x(p).is_none()))
        .map(|e| e.label.as_str())
        .collect();
    if !no_x.is_empty() {
        items.push(Item {
            swatch: Swatch::None,
            label: format!("no tokens logged: {}", no_x.join(", ")),
        });
    }
    items
}

fn draw_svg(cmp: &Comparison, opts: &PlotOpts) -> Result<String> {
    register_font()?;
    let entries = cmp.entries(opts.smooth);
    let (panels, items) = layout(cmp, &entries, opts);
    let rows = panels.len().div_ceil(2);
    let legend_w = legend::width(&items);
    let h = (rows as u32 * MIN_H).max(60 + items.len() as u32 * legend::ROW as u32);
    let size = (2 * PANEL_W + legend_w, h);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("drawing: {e}"))?;
        let (charts, legend_area) = root.split_horizontally(2 * PANEL_W);
        for (panel, area) in panels.iter().zip(charts.split_evenly((rows, 2))) {
            panel.draw(&area)?;
        }
        legend::draw(&legend_area, &items)?;
        root.present().map_err(|e| anyhow!("drawing: {e}"))?;
    }
    Ok(buf)
}

/// Rasterise an SVG of ours, at `scale` times its size, with the embedded font.
fn png_from_svg(svg: &str, scale: f32) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_font_data(FONT.to_vec());
    db.set_sans_serif_family("DejaVu Sans");
    let tree = usvg::Tree::from_str(svg, &opt).context("reading the plot's SVG")?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .context("empty plot")?;
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).context("plot too large")?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("encoding the PNG")
}

impl Comparison<'_> {
    /// The plot as an SVG document.
    pub fn plot_svg(&self, opts: &PlotOpts) -> Result<String> {
        draw_svg(self, opts)
    }

    /// Write the plot to `path`: `.svg` or `.png` (case-insensitive), else an error.
    pub fn plot(&self, path: &Path, opts: &PlotOpts) -> Result<()> {
        write_plot(path, || draw_svg(self, opts))
    }
}

/// Write the SVG that `draw` makes to `path` as SVG or, by its extension, PNG.
pub(crate) fn write_plot(path: &Path, draw: impl FnOnce() -> Result<String>) -> Result<()> {
    let format = plot_format(path)?;
    check_out_dir(path)?;
    let ctx = |e: anyhow::Error| anyhow!("{}: {e:#}", path.display());
    let svg = draw().map_err(ctx)?;
    let bytes = match format {
        PlotFormat::Svg => svg.into_bytes(),
        // Twice the SVG's size: sharp on high-density screens and in documents.
        PlotFormat::Png => png_from_svg(&svg, 2.0).map_err(ctx)?,
    };
    crate::fsutil::write_atomic(path, &bytes)
}
