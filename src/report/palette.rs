//! Colours: one hue per optimizer, fixed by its name so that Muon is blue on every chart of every
//! report; within a hue one shade per seed group (darker for a lower learning rate), and around
//! the group's shade one per seed. A modded-nanogpt log is drawn in greys, as the reference.
use super::comparison::Comparison;
use super::record::RunRecord;
use super::textlog::TEXT_LOG_OPTIM;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Hues (degrees) of the optimizers of the registry.
const HUES: [(&str, f64); 5] = [
    ("muon", 212.0),
    ("newton-muon", 135.0),
    ("adamw", 28.0),
    ("neon", 280.0),
    ("neon-fstar", 345.0),
];

/// Hues for other optimizer names, picked by a hash of the name (stable across reports).
const SPARE_HUES: [f64; 6] = [185.0, 50.0, 5.0, 95.0, 240.0, 315.0];

/// HSL (h in degrees, s and l in 0..1) to RGB.
fn hsl(h: f64, s: f64, l: f64) -> Rgb {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = (h.rem_euclid(360.0)) / 60.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let to = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    Rgb(to(r), to(g), to(b))
}

/// (hue, saturation) of an optimizer.
fn hue(optim: &str) -> (f64, f64) {
    if optim == TEXT_LOG_OPTIM {
        return (0.0, 0.0);
    }
    if let Some((_, h)) = HUES.iter().find(|(n, _)| *n == optim) {
        return (*h, 0.72);
    }
    // FNV-1a: std's hasher is randomly seeded per process.
    let hash = optim.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    (SPARE_HUES[(hash % SPARE_HUES.len() as u64) as usize], 0.72)
}

/// The run's main learning rate: the `lr` of its optimizer's own table, else the first lr.
fn main_lr(run: &RunRecord) -> Option<f64> {
    let lrs: Vec<(&str, f64)> = run
        .hparams
        .iter()
        .filter(|(k, _)| k.rsplit('.').next().is_some_and(|l| l.ends_with("lr")))
        .filter_map(|(k, v)| Some((k.as_str(), v.parse().ok()?)))
        .collect();
    lrs.iter()
        .find(|(k, _)| !k.starts_with("head") && k.ends_with(".lr") || *k == "lr")
        .or(lrs.first())
        .map(|(_, v)| *v)
}

/// Lightness of shade `j` of `k`, dark to light.
fn shade(j: usize, k: usize) -> f64 {
    if k <= 1 {
        0.45
    } else {
        0.30 + 0.32 * j as f64 / (k - 1) as f64
    }
}

/// The colour of the `j`-th of `k` lines of one optimizer drawn without seed groups (the tuning
/// curves of a race): the shades its seed groups get.
pub fn optim_shade(optim: &str, j: usize, k: usize) -> Rgb {
    let (h, s) = hue(optim);
    let base = if s == 0.0 { 0.15 } else { 0.0 };
    hsl(h, s, shade(j, k) - base)
}

/// The colour of every seed group (in the comparison's group order) and of every run.
pub struct Colors {
    pub groups: Vec<Rgb>,
    pub runs: Vec<Rgb>,
}

pub fn colors(cmp: &Comparison) -> Colors {
    let mut groups = vec![Rgb(0, 0, 0); cmp.groups.len()];
    let mut runs = vec![Rgb(0, 0, 0); cmp.runs.len()];
    let mut optims: Vec<&str> = cmp.groups.iter().map(|g| g.optim.as_str()).collect();
    optims.sort_unstable();
    optims.dedup();
    for optim in optims {
        let (h, s) = hue(optim);
        // This optimizer's groups, darkest first: by learning rate, then label.
        let mut mine: Vec<usize> = (0..cmp.groups.len())
            .filter(|&g| cmp.groups[g].optim == optim)
            .collect();
        let lr = |g: usize| main_lr(&cmp.runs[cmp.groups[g].members[0]]).unwrap_or(f64::MAX);
        mine.sort_by(|&a, &b| {
            lr(a)
                .total_cmp(&lr(b))
                .then_with(|| cmp.groups[a].label.cmp(&cmp.groups[b].label))
        });
        let base = if s == 0.0 { 0.15 } else { 0.0 };
        for (j, &g) in mine.iter().enumerate() {
            let l = shade(j, mine.len()) - base;
            groups[g] = hsl(h, s, l);
            // Seeds spread ±0.07 in lightness around their group's shade.
            let members = &cmp.groups[g].members;
            let n = members.len();
            for (i, &r) in members.iter().enumerate() {
                let off = if n > 1 {
                    0.14 * (i as f64 / (n - 1) as f64 - 0.5)
                } else {
                    0.0
                };
                runs[r] = hsl(h, s, (l + off).clamp(0.1, 0.8));
            }
        }
    }
    Colors { groups, runs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsl_matches_known_colours() {
        assert_eq!(hsl(0.0, 1.0, 0.5), Rgb(255, 0, 0));
        assert_eq!(hsl(120.0, 1.0, 0.25), Rgb(0, 128, 0));
        assert_eq!(hsl(240.0, 1.0, 0.5), Rgb(0, 0, 255));
        assert_eq!(hsl(0.0, 0.0, 0.5), Rgb(128, 128, 128));
        assert_eq!(Rgb(31, 119, 180).hex(), "#1f77b4");
    }
}
