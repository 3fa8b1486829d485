//! The legend, in a column of its own beside the panels so that it never covers data.
use super::FAMILY;
use crate::report::palette::Rgb;
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Pixels per legend row.
pub(super) const ROW: i32 = 21;
const FONT_SIZE: u32 = 14;
/// Left of the label: the swatch and a gap.
const LABEL_X: i32 = 44;

pub(super) enum Swatch {
    Line(Rgb),
    /// A seed group: the mean line over its band.
    Band(Rgb),
    /// The target.
    Dashed,
    /// A note without a swatch.
    None,
}

pub(super) struct Item {
    pub swatch: Swatch,
    pub label: String,
}

/// Width the legend needs for its longest label.
pub(super) fn width(items: &[Item]) -> u32 {
    let font = FontDesc::from((FAMILY, FONT_SIZE as f64));
    let widest = items
        .iter()
        .filter_map(|i| font.box_size(&i.label).ok())
        .map(|(w, _)| w)
        .max()
        .unwrap_or(0);
    widest + LABEL_X as u32 + 24
}

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

pub(super) fn draw(area: &DrawingArea<SVGBackend, Shift>, items: &[Item]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing the legend: {e}");
    let top = 44;
    let style = TextStyle::from((FAMILY, FONT_SIZE)).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, item) in items.iter().enumerate() {
        let y = top + i as i32 * ROW;
        let (x0, x1) = (6, 36);
        match item.swatch {
            Swatch::Line(c) => area.draw(&PathElement::new(
                vec![(x0, y), (x1, y)],
                rgb(c).stroke_width(3),
            )),
            Swatch::Band(c) => area
                .draw(&Rectangle::new(
                    [(x0, y - 7), (x1, y + 7)],
                    rgb(c).mix(0.18).filled(),
                ))
                .and_then(|_| {
                    area.draw(&PathElement::new(
                        vec![(x0, y), (x1, y)],
                        rgb(c).stroke_width(3),
                    ))
                }),
            Swatch::Dashed => area
                .draw(&PathElement::new(
                    vec![(x0, y), (x0 + 11, y)],
                    BLACK.mix(0.75).stroke_width(2),
                ))
                .and_then(|_| {
                    area.draw(&PathElement::new(
                        vec![(x0 + 18, y), (x1, y)],
                        BLACK.mix(0.75).stroke_width(2),
                    ))
                }),
            Swatch::None => Ok(()),
        }
        .map_err(|e| err(&e))?;
        let x = if matches!(item.swatch, Swatch::None) {
            x0
        } else {
            LABEL_X
        };
        area.draw(&Text::new(item.label.as_str(), (x, y), style.clone()))
            .map_err(|e| err(&e))?;
    }
    Ok(())
}
