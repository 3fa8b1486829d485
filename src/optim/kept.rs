//! What an optimizer step keeps for the run's diagnostics (docs/diagnostics.md): the trainer
//! arms [`Keeper`]s before a diagnostics step ([`super::OptimizerSet::keep_next_step`]), each
//! optimizer files what it already has at hand while stepping (the update it applies, Muon's
//! Newton–Schulz output, Newton-Muon's statistics, F*'s τ and rank), and the trainer takes it
//! after the step. Nothing is computed here: the singular values come later, off the clock
//! (src/train/diagnostics). Unarmed, a keeper costs one branch per matrix.

use std::collections::BTreeMap;

use candle_core::Tensor;

/// One parameter's share of a kept step.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    /// ΔW, the change the step applied besides the decoupled weight decay:
    /// W ← W·(1 − lr·wd) − ΔW, ΔW = coef·dir of [`super::apply_update`].
    pub update: Option<Tensor>,
    /// Muon and Newton-Muon: the Newton–Schulz output.
    pub ns: Option<NsOutput>,
    /// Newton-Muon: the statistic its preconditioner K⁻¹ was factored from.
    pub precond: Option<Precond>,
    /// Whole-matrix values the optimizer computed anyway (Neon-F*'s `tau`, `kept_rank`).
    pub values: Vec<(&'static str, f64)>,
}

/// The Newton–Schulz output O of one matrix, as the step had it: after the shape scale s.
#[derive(Debug, Clone)]
pub struct NsOutput {
    /// s·O, the shape (rows, cols) of the parameter.
    pub scaled: Tensor,
    /// s, to divide the singular values by ("before the shape scale").
    pub scale: f64,
    /// The lr of the step: the update is exactly lr·s·O, so where lr > 0 O's spectrum is the
    /// update's divided by lr·s and need not be computed again.
    pub lr: f64,
    /// The packed q/k/v thirds were orthogonalised one by one (record-4 scale), so each third
    /// has its own spectrum; otherwise the whole matrix was.
    pub split_qkv: bool,
}

/// Newton-Muon's preconditioner K = blockdiag(S_j + d_j·I) as its last refresh built it: the
/// statistic S_j of every column block j, and the `ridge` coefficient that sets d_j from S_j
/// ([`super::newton_muon::damping`]).
#[derive(Debug, Clone)]
pub struct Precond {
    pub blocks: Vec<Tensor>,
    pub ridge: f64,
}

/// Collects [`Kept`] entries while armed.
#[derive(Debug, Default)]
pub struct Keeper {
    kept: Option<BTreeMap<String, Kept>>,
}

impl Keeper {
    /// Keep what the next step does.
    pub fn arm(&mut self) {
        self.kept = Some(BTreeMap::new());
    }

    /// Everything kept since [`Keeper::arm`], by parameter name; disarms.
    pub fn take(&mut self) -> BTreeMap<String, Kept> {
        self.kept.take().unwrap_or_default()
    }

    /// The entry of parameter `name` while armed; None (keep nothing) otherwise.
    pub fn entry(&mut self, name: &str) -> Option<&mut Kept> {
        let kept = self.kept.as_mut()?;
        Some(kept.entry(name.to_string()).or_default())
    }

    /// Keep `delta` as the update of `name` (when armed).
    pub fn update(&mut self, name: &str, delta: &Tensor) {
        if let Some(k) = self.entry(name) {
            k.update = Some(delta.clone());
        }
    }
}
