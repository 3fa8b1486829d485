//! The learning-rate schedules: record 4's (optional linear warmup, constant, linear warmdown to
//! 0 over a number of steps) and Track 3's (constant, then linear to 0 over the last fraction of
//! the run, times an optional warmup).

use super::config::TrainConfig;

/// The multiplier of every group's base lr at optimizer step `step` (0-based) under `train`'s
/// schedule: Track 3's when `train.cooldown_frac` > 0, else record 4's.
pub fn mult(step: usize, train: &TrainConfig) -> f64 {
    if train.cooldown_frac > 0.0 {
        cooldown_mult(step, train.steps, train.warmup_steps, train.cooldown_frac)
    } else {
        lr_mult(step, train.steps, train.warmup_steps, train.warmdown_steps)
    }
}

/// Track 3's `set_hparams` (train_gpt_simple.py:301-310): with progress = step/steps,
/// η = 1 while progress < 1 − cooldown_frac, else (1 − progress)/cooldown_frac; times the
/// warmup min(1, (step+1)/warmup) of result #2's script, which applies it to every group.
pub fn cooldown_mult(step: usize, steps: usize, warmup: usize, cooldown_frac: f64) -> f64 {
    let progress = step as f64 / steps.max(1) as f64;
    let eta = if progress < 1.0 - cooldown_frac {
        1.0
    } else {
        (1.0 - progress) / cooldown_frac
    };
    let warm = if warmup > 0 {
        ((step + 1) as f64 / warmup as f64).min(1.0)
    } else {
        1.0
    };
    warm * eta
}

/// Multiplier of every group's base lr at optimizer step `step` (0-based), as in modded-nanogpt
/// record 4's `get_lr`: (step+1)/warmup during warmup, 1 in the middle, (steps − step)/warmdown
/// in the warmdown (record 4: 0/4400/1800, so step 6199 gets 1/1800).
pub fn lr_mult(step: usize, steps: usize, warmup: usize, warmdown: usize) -> f64 {
    if step < warmup {
        (step + 1) as f64 / warmup as f64
    } else if step < steps.saturating_sub(warmdown) {
        1.0
    } else {
        (steps.saturating_sub(step)) as f64 / warmdown.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::lr_mult;

    #[test]
    fn record4_schedule_points() {
        // Values from the record's formula: constant until 4400, then (6200 - step)/1800.
        assert_eq!(lr_mult(0, 6200, 0, 1800), 1.0);
        assert_eq!(lr_mult(4399, 6200, 0, 1800), 1.0);
        assert_eq!(lr_mult(4400, 6200, 0, 1800), 1.0);
        assert!((lr_mult(4401, 6200, 0, 1800) - 1799.0 / 1800.0).abs() < 1e-15);
        assert!((lr_mult(6199, 6200, 0, 1800) - 1.0 / 1800.0).abs() < 1e-15);
    }

    /// Track 3's baseline, 3250 steps with cooldown 0.7: flat to step 974 (progress < 0.3), then
    /// (1 − s/3250)/0.7; result #2's warmup of 250 multiplies it.
    #[test]
    fn track3_schedule_points() {
        use super::cooldown_mult;
        assert_eq!(cooldown_mult(0, 3250, 0, 0.7), 1.0);
        assert_eq!(cooldown_mult(974, 3250, 0, 0.7), 1.0);
        let at = |s: f64| (1.0 - s / 3250.0) / 0.7;
        assert!((cooldown_mult(975, 3250, 0, 0.7) - at(975.0)).abs() < 1e-15);
        assert!((cooldown_mult(3249, 3250, 0, 0.7) - at(3249.0)).abs() < 1e-15);
        assert!((cooldown_mult(0, 5625, 250, 0.7) - 1.0 / 250.0).abs() < 1e-15);
        assert_eq!(cooldown_mult(249, 5625, 250, 0.7), 1.0);
    }

    #[test]
    fn warmup_is_linear_from_one_over_warmup() {
        assert!((lr_mult(0, 100, 10, 0) - 0.1).abs() < 1e-15);
        assert!((lr_mult(9, 100, 10, 0) - 1.0).abs() < 1e-15);
        assert_eq!(lr_mult(50, 100, 10, 0), 1.0);
    }
}
