//! The human-readable cells of the report's tables, shared by the markdown and html renderings.
use super::record::Status;
use super::row::RunRow;
use super::seeds::{GroupStats, PairTest};
use super::stats::Welch;

pub const RUN_HEADER: [&str; 12] = [
    "run",
    "optimizer",
    "hyperparameters",
    "device",
    "steps to target",
    "tokens to target",
    "time to target (s)",
    "final step",
    "final val loss",
    "step avg (ms)",
    "tok/s",
    "status",
];

pub const GROUP_HEADER: [&str; 7] = [
    "group",
    "optimizer",
    "n",
    "final val loss (mean ± std)",
    "Track-3 (target−mean)·√n ≥ 0.004",
    "steps to target (mean ± std)",
    "reached",
];

pub const PAIR_HEADER: [&str; 4] = ["a", "b", "final val loss p", "steps to target p"];

const NOT_REACHED: &str = "not reached";

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".to_string())
}

/// Run cells; not-reached runs are marked, not dropped.
pub fn run_cells(r: &RunRow) -> Vec<String> {
    let tgt = |s: String| {
        if r.reached {
            s
        } else {
            NOT_REACHED.to_string()
        }
    };
    vec![
        r.name.clone(),
        r.optim.clone(),
        r.hparams.clone(),
        r.device.clone(),
        tgt(opt(r.target_step, |v| v.to_string())),
        tgt(opt(r.target_tokens, |v| v.to_string())),
        tgt(opt(r.target_train_time_ms, |v| {
            format!("{:.1}", v / 1000.0)
        })),
        opt(r.final_step, |v| v.to_string()),
        opt(r.final_val_loss, |v| format!("{v:.4}")),
        opt(r.step_avg_ms, |v| format!("{v:.1}")),
        opt(r.tok_per_s, |v| format!("{v:.0}")),
        match (r.diverged_at, r.status) {
            (Some(step), _) => format!("diverged @{step}"),
            (None, _) if r.no_data && r.status != Status::Finished => {
                Status::NoData.words().to_string()
            }
            (None, s) => s.words().to_string(),
        },
    ]
}

/// `mean ± std`, the mean alone for a single value, "-" for none.
fn pm(mean: Option<f64>, std: Option<f64>, prec: usize) -> String {
    match (mean, std) {
        (Some(m), Some(s)) => format!("{m:.prec$} ± {s:.prec$}"),
        (Some(m), None) => format!("{m:.prec$}"),
        _ => "-".to_string(),
    }
}

/// Seed-group cells, in [`GROUP_HEADER`] order.
pub fn group_cells(g: &GroupStats) -> Vec<String> {
    vec![
        g.label.clone(),
        g.optim.clone(),
        g.n_label(),
        pm(g.final_loss_mean, g.final_loss_std, 4),
        match (g.track3_margin, g.track3_pass) {
            (Some(m), Some(p)) => format!("{} ({m:.4})", if p { "pass" } else { "fail" }),
            _ => "-".to_string(),
        },
        pm(g.steps_mean, g.steps_std, 1),
        format!("{}/{}", g.reached, g.n),
    ]
}

/// Pair-test cells, in [`PAIR_HEADER`] order; `missing` stands for a test that could not run.
pub fn pair_cells(c: &PairTest, missing: &str) -> Vec<String> {
    let p = |w: &Option<Welch>| {
        w.map(|w| format!("{:.4} (t={:.3}, df={:.2})", w.p, w.t, w.df))
            .unwrap_or_else(|| missing.to_string())
    };
    vec![
        c.a.clone(),
        c.b.clone(),
        p(&c.final_loss),
        p(&c.steps_to_target),
    ]
}
