//! One chart panel: axes with round ticks, ± sd bands, lines, and the target as a dashed line.
use super::FAMILY;
use crate::report::palette::Rgb;
use crate::report::ticks::{decade_ticks, log_ticks, nice_ticks};
use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;

/// A linear axis over `lo..hi` whose grid lines and labels are exactly `ticks` (plotters' own
/// f64 axes choose their own, and its key-point wrapper loses their label formatting).
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let f = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (f64::from(limit.1 - limit.0) * f).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// A line of a panel, in display units.
pub(super) struct Line {
    pub color: Rgb,
    /// Opacity: 1 for a curve, low for the raw train loss under its smoothed line.
    pub alpha: f64,
    pub width: u32,
    pub pts: Vec<(f64, f64)>,
    /// Mark every point (val curves, which have few points).
    pub dots: bool,
}

/// A ± sd band: (x, lo, hi) in display units.
pub(super) struct Band {
    pub color: Rgb,
    pub pts: Vec<(f64, f64, f64)>,
}

/// A single marked point: a chosen point (a ring) or a diverged one (a cross).
pub(super) struct Mark {
    pub color: Rgb,
    pub at: (f64, f64),
    pub cross: bool,
}

pub(super) struct Panel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: &'static str,
    pub lines: Vec<Line>,
    pub bands: Vec<Band>,
    pub marks: Vec<Mark>,
    pub target: Option<f64>,
    pub log_y: bool,
    /// A log x axis over the data's own range (a linear one starts at 0, as steps do).
    pub log_x: bool,
    /// Shown instead of a chart when there is nothing to draw.
    pub empty_note: &'static str,
}

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// A tick value computed through log10 and back, rounded to the round number it stands for.
fn round_tick(v: f64) -> f64 {
    format!("{v:.3e}").parse().unwrap_or(v)
}

/// (lo, hi) of the values, padded by `pad` of the span (a single value gets a unit span).
fn padded(vals: impl Iterator<Item = f64>, pad: f64) -> Option<(f64, f64)> {
    let (lo, hi) = vals
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if lo > hi {
        return None;
    }
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
    Some((lo - pad * span, hi + pad * span))
}

impl Panel {
    fn xs(&self) -> impl Iterator<Item = f64> + '_ {
        let l = self.lines.iter().flat_map(|l| l.pts.iter().map(|p| p.0));
        l.chain(self.bands.iter().flat_map(|b| b.pts.iter().map(|p| p.0)))
            .chain(self.marks.iter().map(|m| m.at.0))
            .filter(|x| !self.log_x || *x > 0.0)
    }

    /// Every y the panel shows, step 0 and the target included, so that nothing is cut off.
    fn ys(&self) -> impl Iterator<Item = f64> + '_ {
        let l = self.lines.iter().flat_map(|l| l.pts.iter().map(|p| p.1));
        let b = self
            .bands
            .iter()
            .flat_map(|b| b.pts.iter().flat_map(|p| [p.1, p.2]));
        l.chain(b)
            .chain(self.marks.iter().map(|m| m.at.1))
            .chain(self.target)
            .filter(|y| !self.log_y || *y > 0.0)
    }

    /// x as drawn: log10 on a log axis.
    fn tx(&self, x: f64) -> f64 {
        if self.log_x {
            x.log10()
        } else {
            x
        }
    }

    /// The x range and ticks as drawn, and the decimals of the labels (`None`: each tick's own).
    fn x_axis(&self) -> Option<(f64, f64, Vec<f64>, Option<usize>)> {
        if self.log_x {
            let (lo, hi) = padded(self.xs().map(f64::log10), 0.06)?;
            let ticks = decade_ticks(10f64.powf(lo), 10f64.powf(hi), 8);
            let ticks = ticks.into_iter().map(f64::log10).collect();
            return Some((lo, hi, ticks, None));
        }
        let (_, hi) = padded(self.xs(), 0.02)?;
        // Steps, tokens and time start at 0.
        let x0 = self.xs().fold(0.0, f64::min);
        let x1 = if hi > x0 { hi } else { x0 + 1.0 };
        let (xt, xd) = nice_ticks(x0, x1, 7);
        Some((x0, x1, xt, Some(xd)))
    }

    /// y as drawn: log10 on a log axis.
    fn ty(&self, y: f64) -> f64 {
        if self.log_y {
            y.log10()
        } else {
            y
        }
    }

    pub fn draw(&self, area: &DrawingArea<SVGBackend, Shift>) -> Result<()> {
        let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", self.title);
        let (Some((x0, x1, xt, xd)), Some((y0, y1))) =
            (self.x_axis(), padded(self.ys().map(|y| self.ty(y)), 0.04))
        else {
            return self.draw_empty(area);
        };
        let (yt, yd) = if self.log_y {
            let (lo, hi) = (10f64.powf(y0), 10f64.powf(y1));
            // 24 px between labels on a ~480 px axis.
            log_ticks(lo, hi, 8, (y1 - y0) * 24.0 / 480.0)
        } else {
            nice_ticks(y0, y1, 8)
        };
        let yt: Vec<f64> = yt.into_iter().map(|y| self.ty(y)).collect();
        let log_y = self.log_y;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FAMILY, 19))
            .margin(10)
            .margin_right(24)
            .x_label_area_size(50)
            .y_label_area_size(62)
            .build_cartesian_2d(
                Ticked {
                    lo: x0,
                    hi: x1,
                    ticks: xt,
                },
                Ticked {
                    lo: y0,
                    hi: y1,
                    ticks: yt,
                },
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(if log_y {
                format!("{} (log scale)", self.y_desc)
            } else {
                self.y_desc.to_string()
            })
            .x_label_formatter(&|x| match xd {
                Some(d) => format!("{x:.d$}"),
                // A log axis's ticks are round values: the shortest form reads back exactly.
                None => format!("{}", round_tick(10f64.powf(*x))),
            })
            .y_label_formatter(&|y| {
                let v = if log_y { 10f64.powf(*y) } else { *y };
                format!("{v:.yd$}")
            })
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .bold_line_style(BLACK.mix(0.08))
            .axis_style(BLACK.mix(0.55))
            .draw()
            .map_err(|e| err(&e))?;
        for b in &self.bands {
            let mut poly: Vec<(f64, f64)> =
                b.pts.iter().map(|p| (self.tx(p.0), self.ty(p.2))).collect();
            poly.extend(b.pts.iter().rev().map(|p| (self.tx(p.0), self.ty(p.1))));
            let fill = rgb(b.color).mix(0.18).filled();
            chart
                .draw_series(std::iter::once(Polygon::new(poly, fill)))
                .map_err(|e| err(&e))?;
        }
        for l in &self.lines {
            let pts: Vec<(f64, f64)> = l
                .pts
                .iter()
                .filter(|p| !self.log_x || p.0 > 0.0)
                .map(|p| (self.tx(p.0), self.ty(p.1)))
                .collect();
            let style = rgb(l.color).mix(l.alpha).stroke_width(l.width);
            if l.dots {
                let dot = rgb(l.color).mix(l.alpha).filled();
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, dot)))
                    .map_err(|e| err(&e))?;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(pts, style)))
                .map_err(|e| err(&e))?;
        }
        for m in self.marks.iter().filter(|m| !self.log_x || m.at.0 > 0.0) {
            let at = (self.tx(m.at.0), self.ty(m.at.1));
            let style = rgb(m.color).stroke_width(2);
            let drawn = if m.cross {
                chart.draw_series(std::iter::once(Cross::new(at, 6, style)))
            } else {
                chart.draw_series(std::iter::once(Circle::new(at, 7, style)))
            };
            drawn.map_err(|e| err(&e))?;
        }
        if let Some(t) = self.target {
            let style = BLACK.mix(0.75).stroke_width(2);
            let t = self.ty(t);
            chart
                .draw_series(DashedLineSeries::new(vec![(x0, t), (x1, t)], 9, 6, style))
                .map_err(|e| err(&e))?;
        }
        Ok(())
    }

    fn draw_empty(&self, area: &DrawingArea<SVGBackend, Shift>) -> Result<()> {
        let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", self.title);
        let (w, h) = area.dim_in_pixel();
        area.draw(&Text::new(
            self.title.as_str(),
            (w as i32 / 2 - 60, 14),
            (FAMILY, 19),
        ))
        .map_err(|e| err(&e))?;
        area.draw(&Text::new(
            self.empty_note,
            (w as i32 / 2 - 70, h as i32 / 2),
            (FAMILY, 15),
        ))
        .map_err(|e| err(&e))
    }
}
