//! The tuning stage on synthetic results: what is run, what is chosen, when the grid grows.

use std::collections::BTreeMap;

use super::grid::{parse_tune, Axis};
use super::tuning::{tune, Outcome, Point, Tuning};
use crate::optim::Method;

/// The muon lr axis of `grid` (multipliers of 0.001).
fn lr_axis(grid: &str) -> Axis {
    let cfg: toml::Value = toml::from_str("[optim.muon]\nlr = 0.001\n").unwrap();
    let arg = parse_tune(&format!("lr={grid}")).unwrap();
    Axis::resolve(&arg, "muon", Method::Muon, &cfg)
        .unwrap()
        .unwrap()
}

fn finished(loss: f64, target_step: Option<usize>) -> Outcome {
    Outcome {
        target_step,
        final_val_loss: Some(loss),
        diverged_at: None,
    }
}

/// Run the tuning as the race does: run every pending point with `f`, until it is done.
/// Returns the final state and every point run, in order.
fn race(
    axes: &[Axis],
    extend: usize,
    f: impl Fn(&Point) -> Outcome,
    valid: impl Fn(&Point) -> Result<(), String>,
) -> (Tuning, Vec<Point>) {
    let key = |p: &Point| p.iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
    let mut ran: BTreeMap<Vec<u64>, Outcome> = BTreeMap::new();
    let mut order = Vec::new();
    for _ in 0..20 {
        let t = tune(axes, extend, |p| Ok(ran.get(&key(p)).copied()), &valid).unwrap();
        if t.done() {
            // The state is a function of the results: asking again changes nothing.
            let again = tune(axes, extend, |p| Ok(ran.get(&key(p)).copied()), &valid).unwrap();
            assert_eq!(format!("{again:?}"), format!("{t:?}"));
            return (t, order);
        }
        for p in &t.pending {
            assert!(ran.insert(key(p), f(p)).is_none(), "{p:?} ran twice");
            order.push(p.clone());
        }
    }
    panic!("the tuning did not end");
}

/// Final loss of a bowl in log10(lr) around `opt`; never reaches the target.
fn bowl(opt: f64) -> impl Fn(&Point) -> Outcome {
    move |p: &Point| finished(5.0 + (p[0].log10() - opt.log10()).powi(2), None)
}

#[test]
fn a_bracketed_optimum_does_not_grow_the_grid() {
    let (t, ran) = race(&[lr_axis("0.1x,1x,10x")], 2, bowl(0.0012), |_| Ok(()));
    assert_eq!(ran.len(), 3);
    assert_eq!((t.extensions, t.bracketed), (0, true));
    assert_eq!(t.best_point(), Some(&vec![0.001]));
}

#[test]
fn an_optimum_on_an_edge_grows_the_grid_until_bracketed() {
    let (t, ran) = race(&[lr_axis("0.1x,1x,10x")], 2, bowl(0.08), |_| Ok(()));
    // 0.01 is the best of the first grid: 0.1 is added, is best, and 1.0 brackets it.
    assert_eq!(t.values[0], vec![0.0001, 0.001, 0.01, 0.1, 1.0]);
    assert_eq!(ran.len(), 5);
    assert_eq!((t.extensions, t.bracketed), (2, true));
    assert_eq!(t.best_point(), Some(&vec![0.1]));
    // Downwards too, at the edge's own ratio.
    let (t, _) = race(&[lr_axis("0.5x,1x,2x")], 2, bowl(0.00026), |_| Ok(()));
    assert_eq!(t.values[0], vec![0.000125, 0.00025, 0.0005, 0.001, 0.002]);
    assert_eq!(t.best_point(), Some(&vec![0.00025]));
}

#[test]
fn an_optimum_still_on_the_edge_after_the_allowance_is_untuned() {
    let (t, ran) = race(&[lr_axis("0.1x,1x,10x")], 2, bowl(50.0), |_| Ok(()));
    assert_eq!(ran.len(), 5);
    assert_eq!((t.extensions, t.bracketed), (2, false));
    assert_eq!(t.best_point(), Some(&vec![1.0]));
    assert!(
        t.note.contains("upper edge of lr (1) after 2 extension"),
        "{}",
        t.note
    );
    let (t, ran) = race(&[lr_axis("0.1x,1x,10x")], 0, bowl(50.0), |_| Ok(()));
    assert_eq!((ran.len(), t.bracketed), (3, false));
}

#[test]
fn a_point_the_config_refuses_stops_the_growth() {
    let refuse = |p: &Point| {
        if p[0] > 0.05 {
            Err("optim.muon.lr is too large".to_string())
        } else {
            Ok(())
        }
    };
    let (t, ran) = race(&[lr_axis("0.1x,1x,10x")], 2, bowl(50.0), refuse);
    assert_eq!(ran.len(), 3);
    assert!(!t.bracketed);
    assert!(t.note.contains("optim.muon.lr is too large"), "{}", t.note);
}

#[test]
fn the_rule_ranks_steps_then_loss_then_divergence() {
    let reached = |s, l| finished(l, Some(s));
    let diverged = |d| Outcome {
        target_step: None,
        final_val_loss: Some(f64::NAN),
        diverged_at: Some(d),
    };
    // Fewest steps wins over a lower final loss; a tie on steps goes to the lower loss.
    let mut outs = [
        finished(4.0, None),
        reached(80, 5.0),
        reached(70, 5.6),
        reached(70, 5.5),
        diverged(3),
        diverged(9),
    ];
    outs.sort_by(|a, b| a.cmp_rank(b));
    let order: Vec<(Option<usize>, Option<usize>)> = outs
        .iter()
        .map(|o| (o.target_step, o.diverged_at))
        .collect();
    assert_eq!(
        order,
        vec![
            (Some(70), None),
            (Some(70), None),
            (Some(80), None),
            (None, None),
            (None, Some(9)),
            (None, Some(3))
        ]
    );
    assert_eq!(outs[0].final_val_loss, Some(5.5));
    // Every point diverged: the one that lasted longest, at the lower edge, grows the grid down.
    let f = |p: &Point| diverged((1.0 / p[0]) as usize);
    let (t, _) = race(&[lr_axis("1x,10x")], 1, f, |_| Ok(()));
    assert_eq!(t.values[0], vec![0.0001, 0.001, 0.01]);
    // An exact tie goes to the lower value.
    let (t, _) = race(
        &[lr_axis("1x,2x,4x")],
        0,
        |_| finished(5.0, None),
        |_| Ok(()),
    );
    assert_eq!(t.best_point(), Some(&vec![0.001]));
}

#[test]
fn two_axes_grow_the_one_whose_edge_the_best_point_is_on() {
    let cfg: toml::Value = toml::from_str("[optim.muon]\nlr = 0.001\nmomentum = 0.9\n").unwrap();
    let m = Axis::resolve(
        &parse_tune("momentum=0.8,0.9,0.95").unwrap(),
        "muon",
        Method::Muon,
        &cfg,
    )
    .unwrap()
    .unwrap();
    let f = |p: &Point| {
        finished(
            5.0 + (p[0].log10() + 1.0).powi(2) + (p[1] - 0.9).powi(2),
            None,
        )
    };
    let (t, ran) = race(&[lr_axis("1x,10x"), m], 2, f, |_| Ok(()));
    // lr 0.01 is the upper edge: 0.1 is added with every momentum (3 more runs), is the upper
    // edge in turn, and 1.0 brackets it; momentum 0.9 was inside its grid from the start.
    assert_eq!(t.values[0], vec![0.001, 0.01, 0.1, 1.0]);
    assert_eq!(t.values[1], vec![0.8, 0.9, 0.95]);
    assert_eq!(ran.len(), 12);
    assert_eq!(t.best_point(), Some(&vec![0.1, 0.9]));
    assert!(t.bracketed);
}

#[test]
fn no_axes_is_one_point() {
    let (t, ran) = race(&[], 2, |_| finished(5.0, None), |_| Ok(()));
    assert_eq!(ran, vec![Vec::<f64>::new()]);
    assert_eq!(t.best, Some(0));
}
