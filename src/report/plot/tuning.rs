//! The tuning curves of a race: each contestant's seed-0 final val loss against the value of its
//! tuned key, on a log axis when every value is positive; the chosen point ringed, a diverged
//! point crossed at the top of the panel, the target dashed.
use super::legend::{self, Item, Swatch};
use super::panel::{Line, Mark, Panel};
use super::{register_font, MIN_H, PANEL_W};
use crate::report::palette::{optim_shade, Rgb};
use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// One line of the tuning plot.
#[derive(Debug, Clone, PartialEq)]
pub struct TuningCurve {
    pub label: String,
    pub optim: String,
    /// (value, final val loss); `None`: the run diverged.
    pub points: Vec<(f64, Option<f64>)>,
    /// The value chosen as best.
    pub chosen: Option<f64>,
}

/// The colour of each curve: its optimizer's hue, a shade per curve of the same optimizer.
fn curve_colors(curves: &[TuningCurve]) -> Vec<Rgb> {
    curves
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let same: Vec<usize> = (0..curves.len())
                .filter(|&j| curves[j].optim == c.optim)
                .collect();
            let j = same.iter().position(|&j| j == i).unwrap_or(0);
            optim_shade(&c.optim, j, same.len())
        })
        .collect()
}

/// The panel and legend of the tuning plot of `key`.
fn layout(curves: &[TuningCurve], key: &str, target: Option<f64>) -> (Panel, Vec<Item>) {
    let all = || curves.iter().flat_map(|c| c.points.iter());
    let log_x = all().all(|p| p.0 > 0.0);
    let ys: Vec<f64> = all()
        .filter_map(|p| p.1)
        .filter(|y| y.is_finite())
        .collect();
    let (lo, hi) = ys
        .iter()
        .chain(target.iter())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| {
            (l.min(*y), h.max(*y))
        });
    // Diverged points sit above every loss, where no curve is.
    let top = if hi > lo {
        hi + 0.08 * (hi - lo)
    } else {
        hi + 0.1
    };
    let colors = curve_colors(curves);
    let mut panel = Panel {
        title: format!("final val loss against {key} (seed 0)"),
        x_desc: if log_x {
            format!("{key} (log scale)")
        } else {
            key.to_string()
        },
        y_desc: "final val loss",
        lines: Vec::new(),
        bands: Vec::new(),
        marks: Vec::new(),
        target,
        log_y: false,
        log_x,
        empty_note: "no tuning run has ended yet",
    };
    let mut items = Vec::new();
    for (c, &color) in curves.iter().zip(&colors) {
        let mut pts: Vec<(f64, f64)> = c
            .points
            .iter()
            .filter_map(|&(x, y)| Some((x, y.filter(|y| y.is_finite())?)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        panel.lines.push(Line {
            color,
            alpha: 1.0,
            width: 2,
            pts,
            dots: true,
        });
        for &(x, y) in &c.points {
            let diverged = !y.is_some_and(f64::is_finite);
            let at = (x, if diverged { top } else { y.unwrap_or(top) });
            if diverged {
                panel.marks.push(Mark {
                    color,
                    at,
                    cross: true,
                });
            }
            if c.chosen == Some(x) {
                panel.marks.push(Mark {
                    color,
                    at,
                    cross: false,
                });
            }
        }
        items.push(Item {
            swatch: Swatch::Line(color),
            label: c.label.clone(),
        });
    }
    items.push(Item {
        swatch: Swatch::None,
        label: "ring: chosen point; cross: diverged".into(),
    });
    if let Some(t) = target {
        items.push(Item {
            swatch: Swatch::Dashed,
            label: format!("target {t}"),
        });
    }
    (panel, items)
}

/// The tuning plot as an SVG document.
pub fn tuning_svg(curves: &[TuningCurve], key: &str, target: Option<f64>) -> Result<String> {
    register_font()?;
    let (panel, items) = layout(curves, key, target);
    let legend_w = legend::width(&items);
    let h = MIN_H.max(60 + items.len() as u32 * legend::ROW as u32);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (PANEL_W + legend_w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("drawing: {e}"))?;
        let (chart, legend_area) = root.split_horizontally(PANEL_W);
        panel.draw(&chart)?;
        legend::draw(&legend_area, &items)?;
        root.present().map_err(|e| anyhow!("drawing: {e}"))?;
    }
    Ok(buf)
}
