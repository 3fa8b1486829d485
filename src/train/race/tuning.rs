//! Stage 1 of a tuned race, for one contestant: run every point of its grid on seed 0, rank them,
//! and grow the grid one point outward where the best lies on an edge, up to `--tune-extend`
//! times. A pure function of the results found so far, so that the race, a rerun and the report
//! all come to the same state.

use std::cmp::Ordering;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::grid::{fmt_value, grow, Axis};
use crate::train::run_dir::Summary;

/// The rule that picks a contestant's best point, as the race prints it.
pub const RULE: &str = "best point: the fewest steps to the target; points that tie on steps, and \
points that never reach the target, are ranked by final val loss; diverged points come last (a \
later divergence first); an exact tie goes to the lower value";

/// What a run that has ended came to, as its summary says.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub target_step: Option<usize>,
    pub final_val_loss: Option<f64>,
    pub diverged_at: Option<usize>,
}

impl Outcome {
    /// The outcome of a run that has ended (finished or diverged); `None` for one still to run.
    pub fn of(s: &Summary) -> Option<Outcome> {
        s.ended().then_some(Outcome {
            target_step: s.target_step,
            final_val_loss: s.final_val_loss,
            diverged_at: s.diverged_at,
        })
    }

    /// The ranking of [`RULE`]: smaller is better.
    fn key(&self) -> (u8, f64, f64) {
        let loss = self
            .final_val_loss
            .filter(|l| l.is_finite())
            .unwrap_or(f64::INFINITY);
        match (self.diverged_at, self.target_step) {
            (Some(d), _) => (2, -(d as f64), 0.0),
            (None, Some(s)) => (0, s as f64, loss),
            (None, None) => (1, loss, 0.0),
        }
    }

    /// How `self` ranks against `other` under [`RULE`] (`Less`: better).
    pub fn cmp_rank(&self, other: &Outcome) -> Ordering {
        let (a, b) = (self.key(), other.key());
        a.0.cmp(&b.0)
            .then(a.1.total_cmp(&b.1))
            .then(a.2.total_cmp(&b.2))
    }
}

/// A grid point: one value per axis.
pub type Point = Vec<f64>;

/// A point and what its seed-0 run came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tried {
    pub point: Point,
    pub outcome: Outcome,
}

/// Where a contestant's tuning stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tuning {
    /// Every axis's values so far, ascending (the first grid and what it grew by).
    pub values: Vec<Vec<f64>>,
    /// Times the grid grew.
    pub extensions: usize,
    /// The points whose runs have ended, in grid order.
    pub tried: Vec<Tried>,
    /// Points still to run before the tuning can go on (empty once it is done).
    pub pending: Vec<Point>,
    /// Index in `tried` of the best point, once done.
    pub best: Option<usize>,
    /// The best point is inside the grid on every axis (not on an edge).
    pub bracketed: bool,
    /// Why the tuning ended, or what it waits for.
    pub note: String,
}

impl Tuning {
    pub fn done(&self) -> bool {
        self.pending.is_empty()
    }

    /// The best point, once done.
    pub fn best_point(&self) -> Option<&Point> {
        self.best.map(|i| &self.tried[i].point)
    }
}

/// Every combination of the axes' values, the first axis varying slowest.
fn product(values: &[Vec<f64>]) -> Vec<Point> {
    values.iter().fold(vec![Vec::new()], |acc, vs| {
        acc.iter()
            .flat_map(|p| {
                vs.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push(*v);
                    q
                })
            })
            .collect()
    })
}

/// Tune one contestant over `axes`, growing an edge at most `extend` times. `outcome` gives the
/// result of a point's seed-0 run (`None`: not ended yet); `valid` checks the config of a point
/// the grid would grow to (an invalid one is not run: the grid cannot grow that way).
pub fn tune(
    axes: &[Axis],
    extend: usize,
    mut outcome: impl FnMut(&Point) -> Result<Option<Outcome>>,
    mut valid: impl FnMut(&Point) -> std::result::Result<(), String>,
) -> Result<Tuning> {
    let mut t = Tuning {
        values: axes.iter().map(|a| a.values.clone()).collect(),
        extensions: 0,
        tried: Vec::new(),
        pending: Vec::new(),
        best: None,
        bracketed: false,
        note: String::new(),
    };
    loop {
        t.tried.clear();
        for p in product(&t.values) {
            match outcome(&p)? {
                Some(o) => t.tried.push(Tried {
                    point: p,
                    outcome: o,
                }),
                None => t.pending.push(p),
            }
        }
        if !t.pending.is_empty() {
            t.note = format!("{} point(s) to run", t.pending.len());
            return Ok(t);
        }
        let best = (0..t.tried.len())
            .min_by(|&i, &j| t.tried[i].outcome.cmp_rank(&t.tried[j].outcome))
            .expect("a grid has at least one point");
        t.best = Some(best);
        let point = t.tried[best].point.clone();
        // (axis, up) of every edge the best point lies on.
        let edges: Vec<(usize, bool)> = t
            .values
            .iter()
            .enumerate()
            .filter(|(_, vs)| vs.len() >= 2)
            .filter_map(|(i, vs)| match point[i] {
                v if v == vs[0] => Some((i, false)),
                v if v == vs[vs.len() - 1] => Some((i, true)),
                _ => None,
            })
            .collect();
        if edges.is_empty() {
            t.bracketed = true;
            t.note = "bracketed".into();
            return Ok(t);
        }
        let edge_names: Vec<String> = edges
            .iter()
            .map(|&(i, up)| {
                let a = &axes[i];
                let side = if up { "upper" } else { "lower" };
                format!(
                    "the {side} edge of {} ({})",
                    a.key,
                    fmt_value(point[i], a.integer)
                )
            })
            .collect();
        if t.extensions == extend {
            t.note = format!(
                "best at {} after {extend} extension(s)",
                edge_names.join(" and ")
            );
            return Ok(t);
        }
        let mut blocked = Vec::new();
        let mut grew = false;
        for &(i, up) in &edges {
            let a = &axes[i];
            let next = grow(&t.values[i], up, a.integer).ok_or_else(|| {
                let dir = if up { "above" } else { "below" };
                let edge = fmt_value(point[i], a.integer);
                format!("{} cannot grow {dir} {edge}", a.key)
            });
            let checked = next.and_then(|v| {
                let mut q = point.clone();
                q[i] = v;
                valid(&q).map(|()| v)
            });
            match checked {
                Ok(v) if up => t.values[i].push(v),
                Ok(v) => t.values[i].insert(0, v),
                Err(why) => {
                    blocked.push(why);
                    continue;
                }
            }
            grew = true;
        }
        if !grew {
            t.note = format!(
                "best at {}; {}",
                edge_names.join(" and "),
                blocked.join("; ")
            );
            return Ok(t);
        }
        t.extensions += 1;
    }
}
