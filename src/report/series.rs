//! The curves the charts draw, computed once from a comparison: for every run its val loss, raw
//! train loss and smoothed train loss, and for every seed group with n ≥ 2 the same curves as the
//! mean over its seeds with a ± one standard deviation band. Each point keeps its step, tokens
//! and train time, so one set of curves serves every x axis (`--x`, the HTML page's switch).
use super::comparison::Comparison;
use super::jsonl::MEDIAN_FIELDS;
use super::palette::{self, Rgb};
use super::record::{RunRecord, Source};
use super::stats::{ema_debiased, mean_std};
use std::collections::BTreeMap;

/// The x axis of a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XAxis {
    #[default]
    Step,
    Tokens,
    /// The record-4 train clock.
    Time,
}

impl XAxis {
    pub const ALL: [XAxis; 3] = [XAxis::Step, XAxis::Tokens, XAxis::Time];

    pub fn name(self) -> &'static str {
        match self {
            XAxis::Step => "step",
            XAxis::Tokens => "tokens",
            XAxis::Time => "time",
        }
    }

    /// The point's x in raw units (steps, tokens, milliseconds); `None` when the run does not
    /// say (tokens of a text log without a batch size).
    pub fn x(self, p: &Pt) -> Option<f64> {
        match self {
            XAxis::Step => Some(p.step as f64),
            XAxis::Tokens => p.tokens,
            XAxis::Time => Some(p.time_ms),
        }
    }
}

/// One point of a curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Pt {
    pub step: u64,
    pub tokens: Option<f64>,
    pub time_ms: f64,
    pub y: f64,
    /// (mean − sd, mean + sd) of a seed group's point.
    pub band: Option<(f64, f64)>,
}

impl Pt {
    /// A run's own point, as its log gives it (no band).
    fn logged(step: u64, tokens: Option<u64>, time_ms: f64, y: f64) -> Pt {
        Pt {
            step,
            tokens: tokens.map(|t| t as f64),
            time_ms,
            y,
            band: None,
        }
    }
}

pub type Curve = Vec<Pt>;

/// What a chart draws for one run or one seed group.
#[derive(Debug, Clone)]
pub struct Entry {
    pub label: String,
    pub optim: String,
    pub color: Rgb,
    /// Indices into the comparison's runs: the run itself, or the group's seeds.
    pub runs: Vec<usize>,
    pub val: Curve,
    pub train: Curve,
    /// The train loss smoothed by [`ema_debiased`].
    pub train_ema: Curve,
    /// The median over the matrices of each of [`MEDIAN_FIELDS`] on the diagnostics steps
    /// (docs/diagnostics.md); empty curves when the run has no `diag` records.
    pub diag: Vec<Curve>,
}

/// Which train loss the train curves draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainBasis {
    /// speedrun's mean over every micro-batch of every rank of the step.
    Mean,
    /// Rank 0's loss on its last loader call, the number the records' own logs print
    /// (modded-nanogpt train_gpt2.py:492): drawn when a modded-nanogpt log is in the comparison,
    /// so that its curve and the runs' are like for like.
    Rank0Last,
}

impl TrainBasis {
    /// How chart titles name the basis.
    pub fn describe(self) -> &'static str {
        match self {
            TrainBasis::Mean => "mean over all micro-batches of the step",
            TrainBasis::Rank0Last => "last micro-batch of rank 0, as the records log it",
        }
    }
}

/// Every run, and the seed groups with n ≥ 2.
#[derive(Debug, Clone)]
pub struct Entries {
    pub runs: Vec<Entry>,
    pub groups: Vec<Entry>,
    /// The EMA weight of `train_ema`.
    pub smooth: f64,
    /// Which train loss `train` and `train_ema` are.
    pub train_basis: TrainBasis,
}

impl Entries {
    /// What a static plot draws: each group with n ≥ 2 as mean ± sd, every other run alone.
    pub fn grouped(&self) -> Vec<&Entry> {
        let in_group = |i: usize| self.groups.iter().any(|g| g.runs.contains(&i));
        self.groups
            .iter()
            .chain(self.runs.iter().filter(|r| !in_group(r.runs[0])))
            .collect()
    }
}

fn val_curve(run: &RunRecord) -> Curve {
    run.val
        .iter()
        .filter(|v| v.val_loss.is_finite())
        .map(|v| Pt::logged(v.step, v.tokens, v.train_time_ms, v.val_loss))
        .collect()
}

/// (raw, smoothed) train loss of a run on `basis`, non-finite losses (and, on the records'
/// basis, steps of logs that lack it) left out.
fn train_curves(run: &RunRecord, smooth: f64, basis: TrainBasis) -> (Curve, Curve) {
    let raw: Curve = run
        .train
        .iter()
        .filter_map(|t| {
            let y = match basis {
                TrainBasis::Mean => t.loss,
                TrainBasis::Rank0Last => t.loss_rank0_last?,
            };
            y.is_finite()
                .then(|| Pt::logged(t.step, t.tokens, t.train_time_ms, y))
        })
        .collect();
    let ys: Vec<f64> = raw.iter().map(|p| p.y).collect();
    let ema = raw
        .iter()
        .zip(ema_debiased(&ys, smooth))
        .map(|(p, y)| Pt { y, ..p.clone() })
        .collect();
    (raw, ema)
}

/// Per field of [`MEDIAN_FIELDS`], its median over the matrices against the step, with tokens
/// and train time taken from the train record of the same step.
fn diag_curves(run: &RunRecord) -> Vec<Curve> {
    let at: BTreeMap<u64, (Option<u64>, f64)> = run
        .train
        .iter()
        .map(|t| (t.step, (t.tokens, t.train_time_ms)))
        .collect();
    MEDIAN_FIELDS
        .iter()
        .map(|(field, _)| {
            let pts = run.scalars.get(&format!("diag/median/{field}"));
            pts.into_iter()
                .flatten()
                .filter(|(_, y)| y.is_finite())
                // A diag record always follows its step's train record; one without it (a
                // log cut mid-step) has no x on the time axis and is left out.
                .filter_map(|&(step, y)| {
                    let &(tokens, time_ms) = at.get(&step)?;
                    Some(Pt::logged(step, tokens, time_ms, y))
                })
                .collect()
        })
        .collect()
}

/// The mean over the members at the steps every member has, with ± sd as the band. Tokens and
/// train time are averaged too (seeds of one config share steps and tokens; their clocks differ).
pub fn mean_curve(members: &[&Curve]) -> Curve {
    let mut at: BTreeMap<u64, Vec<&Pt>> = BTreeMap::new();
    for c in members {
        for p in c.iter() {
            at.entry(p.step).or_default().push(p);
        }
    }
    at.into_iter()
        .filter(|(_, ps)| ps.len() == members.len())
        .map(|(step, ps)| {
            let ys: Vec<f64> = ps.iter().map(|p| p.y).collect();
            let (mean, sd) = mean_std(&ys).unwrap_or((f64::NAN, None));
            let n = ps.len() as f64;
            let tokens: Option<f64> = ps.iter().map(|p| p.tokens).sum();
            Pt {
                step,
                tokens: tokens.map(|t| t / n),
                time_ms: ps.iter().map(|p| p.time_ms).sum::<f64>() / n,
                y: mean,
                band: sd.map(|s| (mean - s, mean + s)),
            }
        })
        .collect()
}

impl Comparison<'_> {
    /// The curves of every run and of every seed group with n ≥ 2, coloured by
    /// [`palette::colors`], the train loss smoothed with EMA weight `smooth`.
    pub fn entries(&self, smooth: f64) -> Entries {
        let colors = palette::colors(self);
        let basis = if self.runs.iter().any(|r| r.source == Source::TextLog) {
            TrainBasis::Rank0Last
        } else {
            TrainBasis::Mean
        };
        let runs: Vec<Entry> = self
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (train, train_ema) = train_curves(r, smooth, basis);
                Entry {
                    label: r.name.clone(),
                    optim: r.optim.clone(),
                    color: colors.runs[i],
                    runs: vec![i],
                    val: val_curve(r),
                    train,
                    train_ema,
                    diag: diag_curves(r),
                }
            })
            .collect();
        let groups = self
            .groups
            .iter()
            .zip(&colors.groups)
            .filter_map(|(g, &color)| {
                // A seed with nothing logged yet would empty the mean (it averages the steps
                // every member has): it is drawn alone, and the group over the others.
                let members: Vec<usize> = g
                    .members
                    .iter()
                    .copied()
                    .filter(|&i| !runs[i].val.is_empty() || !runs[i].train.is_empty())
                    .collect();
                (members.len() >= 2).then_some((g, color, members))
            })
            .map(|(g, color, members)| {
                let of = |f: fn(&Entry) -> &Curve| {
                    let cs: Vec<&Curve> = members.iter().map(|&i| f(&runs[i])).collect();
                    mean_curve(&cs)
                };
                Entry {
                    label: format!("{} (n={}, mean ± sd)", g.label, members.len()),
                    optim: g.optim.clone(),
                    color,
                    runs: members.clone(),
                    val: of(|e| &e.val),
                    train: of(|e| &e.train)
                        .into_iter()
                        .map(|p| Pt { band: None, ..p })
                        .collect(),
                    train_ema: of(|e| &e.train_ema),
                    diag: (0..MEDIAN_FIELDS.len())
                        .map(|k| {
                            let cs: Vec<&Curve> =
                                members.iter().map(|&i| &runs[i].diag[k]).collect();
                            mean_curve(&cs)
                        })
                        .collect(),
                }
            })
            .collect();
        Entries {
            runs,
            groups,
            smooth,
            train_basis: basis,
        }
    }
}
