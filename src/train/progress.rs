//! Where a run stands: the step, the record-4 clock, the target hit and the last val loss. The
//! checkpoint's `state.json` and the run's `summary.json` are both derived from this one value.

use serde::{Deserialize, Serialize};

use super::config::Config;
use super::run_dir::{RunStatus, Summary};

/// Steps left off the clock, as in record 4 (its first 10 steps include compilation and
/// warm-up: `if step <= 10: training_time_ms = 0`).
pub const UNTIMED_STEPS: usize = 10;

/// The first validation at or below the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetHit {
    pub step: usize,
    pub tokens: u64,
    pub train_time_ms: f64,
    pub val_loss: f64,
}

/// The progress of one run. Serialized flat into `state.json` (its field names are the
/// checkpoint format's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps completed.
    pub step: usize,
    /// The record-4 clock so far (ms): optimizer steps after the first [`UNTIMED_STEPS`],
    /// validation excluded.
    pub train_time_ms: f64,
    /// Steps counted in `train_time_ms` (for step_avg).
    pub timed_steps: usize,
    pub target: Option<TargetHit>,
    pub last_val_loss: Option<f64>,
    /// The step of `last_val_loss`. A checkpoint written at a step that owed a validation holds
    /// it unless a stop request came first; the resume then validates there (exactly once).
    /// Absent from older checkpoints, which always validated first: see [`Progress::assume_val_step`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_step: Option<usize>,
    /// The step after which the train loss was not finite (the run ended there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_at: Option<usize>,
}

impl Progress {
    /// Mean ms of a timed step (0 before the first).
    pub fn step_avg_ms(&self) -> f64 {
        if self.timed_steps == 0 {
            0.0
        } else {
            self.train_time_ms / self.timed_steps as f64
        }
    }

    /// Count one finished optimizer step of `ms` (on the clock once past the untimed steps).
    pub fn finish_step(&mut self, ms: f64) {
        if self.step >= UNTIMED_STEPS {
            self.train_time_ms += ms;
            self.timed_steps += 1;
        }
        self.step += 1;
    }

    /// Record a validation; returns the hit when this one first reaches `target_loss`.
    pub fn record_val(
        &mut self,
        val_loss: f64,
        target_loss: f64,
        tokens: u64,
    ) -> Option<TargetHit> {
        self.last_val_loss = Some(val_loss);
        self.val_step = Some(self.step);
        // Written so that NaN never counts as reaching the target.
        let reached = matches!(
            val_loss.partial_cmp(&target_loss),
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        );
        if self.target.is_some() || !reached {
            return None;
        }
        let hit = TargetHit {
            step: self.step,
            tokens,
            train_time_ms: self.train_time_ms,
            val_loss,
        };
        self.target = Some(hit.clone());
        Some(hit)
    }

    /// Fill in `val_step` for a checkpoint written before the field existed: those validated at
    /// every step that owed it before checkpointing, so the last validation is the latest
    /// multiple of `val_every` (or the step itself at the end).
    pub fn assume_val_step(&mut self, val_every: usize, steps: usize) {
        if self.val_step.is_none() && self.last_val_loss.is_some() {
            let s = self.step;
            self.val_step = Some(if s == steps {
                s
            } else {
                s - s % val_every.max(1)
            });
        }
    }

    /// `summary.json` of run `name` under `cfg` at this point; `data_epochs` is the train loader's
    /// count of passes over its shards.
    pub fn summary(
        &self,
        cfg: &Config,
        name: &str,
        device: &str,
        status: RunStatus,
        data_epochs: usize,
    ) -> Summary {
        let batch_tokens = cfg.train.batch_tokens as f64;
        let tok_per_s = if self.train_time_ms > 0.0 {
            batch_tokens * self.timed_steps as f64 / (self.train_time_ms / 1e3)
        } else {
            0.0
        };
        let hit = self.target.as_ref();
        Summary {
            name: name.to_string(),
            optim: cfg.optim.name.to_string(),
            seed: cfg.seed,
            target_loss: cfg.train.target_loss,
            reached_target: hit.is_some(),
            target_step: hit.map(|h| h.step),
            target_tokens: hit.map(|h| h.tokens),
            target_train_time_ms: hit.map(|h| h.train_time_ms),
            final_step: self.step,
            final_val_loss: self.last_val_loss,
            final_train_time_ms: self.train_time_ms,
            step_avg_ms: self.step_avg_ms(),
            tok_per_s,
            finished: status == RunStatus::Finished,
            data_epochs,
            diverged_at: self.diverged_at,
            device: device.to_string(),
            status: Some(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_skips_untimed_steps_and_target_is_first_hit() {
        let mut p = Progress::default();
        for _ in 0..12 {
            p.finish_step(100.0);
        }
        assert_eq!((p.step, p.timed_steps, p.train_time_ms), (12, 2, 200.0));
        assert_eq!(p.step_avg_ms(), 100.0);
        assert!(p.record_val(5.0, 4.0, 10).is_none());
        assert!(
            p.record_val(f64::NAN, 4.0, 11).is_none(),
            "NaN never reaches a target"
        );
        let hit = p.record_val(3.9, 4.0, 12).unwrap();
        assert_eq!((hit.step, hit.tokens, hit.train_time_ms), (12, 12, 200.0));
        assert!(
            p.record_val(3.0, 4.0, 13).is_none(),
            "only the first hit counts"
        );
        assert_eq!(p.last_val_loss, Some(3.0));
        assert_eq!(p.target.unwrap().val_loss, 3.9);
    }
}
