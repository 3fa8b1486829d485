//! The record-4 learning-rate schedule: optional linear warmup, constant, linear warmdown to 0.

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

    #[test]
    fn warmup_is_linear_from_one_over_warmup() {
        assert!((lr_mult(0, 100, 10, 0) - 0.1).abs() < 1e-15);
        assert!((lr_mult(9, 100, 10, 0) - 1.0).abs() < 1e-15);
        assert_eq!(lr_mult(50, 100, 10, 0), 1.0);
    }
}
