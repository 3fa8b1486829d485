//! `[optim]` preset table. Every field has a default so a preset may omit whole tables; unknown
//! keys are errors (`deny_unknown_fields`) so a typo such as `optim.muon.lrr` is caught.

use serde::{Deserialize, Serialize};

/// Optimizer hyperparameters, `[optim]` in a preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// The method ([`super::Method`]; an unknown name is rejected with the list of valid ones).
    pub name: super::Method,
    /// AdamW on the tied embedding/head under the matrix optimizers (record 4).
    #[serde(deserialize_with = "de_head")]
    pub head: AdamWConfig,
    /// `--optim adamw`: every parameter on AdamW (record-2 style).
    #[serde(deserialize_with = "de_all")]
    pub adamw: AdamWConfig,
    pub muon: MuonConfig,
    pub newton_muon: NewtonMuonConfig,
    pub neon: NeonConfig,
    pub neon_fstar: NeonFStarConfig,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            name: super::Method::Muon,
            head: AdamWConfig::head(),
            adamw: AdamWConfig::all_params(),
            muon: MuonConfig::default(),
            newton_muon: NewtonMuonConfig::default(),
            neon: NeonConfig::default(),
            neon_fstar: NeonFStarConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// Whether the tied embedding/head matrix is decayed too. Records 1–2 took the llm.c trainer's
    /// `configure_optimizers`, which decays every parameter with ≥ 2 dims ("all weight tensors in
    /// matmuls + embeddings decay"); this model has only 2-D parameters, so the `adamw` default is
    /// true (every parameter decayed). It only matters when wd > 0.
    pub decay_embedding: bool,
}

impl AdamWConfig {
    /// Record 4 head/embedding: lr 0.0036, betas (0.9, 0.95), eps 1e-8, wd 0.
    pub fn head() -> Self {
        AdamWConfig {
            lr: 0.0036,
            betas: (0.9, 0.95),
            eps: 1e-8,
            weight_decay: 0.0,
            decay_embedding: false,
        }
    }
    /// Record 2 all-parameter AdamW: lr 0.0018, betas (0.9, 0.95), eps 1e-8, wd 0.1.
    pub fn all_params() -> Self {
        AdamWConfig {
            lr: 0.0018,
            betas: (0.9, 0.95),
            eps: 1e-8,
            weight_decay: 0.1,
            decay_embedding: true,
        }
    }
}

/// A partially given AdamW table: missing keys come from the table's own defaults (`head()` for
/// `[optim.head]`, `all_params()` for `[optim.adamw]`), so `[optim.adamw] lr = 0.002` keeps wd 0.1.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdamWPartial {
    lr: Option<f64>,
    betas: Option<(f64, f64)>,
    eps: Option<f64>,
    weight_decay: Option<f64>,
    decay_embedding: Option<bool>,
}

impl AdamWPartial {
    fn fill(self, d: AdamWConfig) -> AdamWConfig {
        AdamWConfig {
            lr: self.lr.unwrap_or(d.lr),
            betas: self.betas.unwrap_or(d.betas),
            eps: self.eps.unwrap_or(d.eps),
            weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
            decay_embedding: self.decay_embedding.unwrap_or(d.decay_embedding),
        }
    }
}

fn de_head<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AdamWConfig, D::Error> {
    Ok(AdamWPartial::deserialize(d)?.fill(AdamWConfig::head()))
}

fn de_all<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AdamWConfig, D::Error> {
    Ok(AdamWPartial::deserialize(d)?.fill(AdamWConfig::all_params()))
}

/// Shape-scale rule of an orthogonalised (or rank-1 LMO) update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Record 4: √max(rows, cols); packed QKV split into three blocks scaled by √cols.
    Record4,
    /// KellerJordan/Muon, torch.optim.Muon: √max(1, rows/cols).
    Original,
    /// Moonlight: 0.2·√max(rows, cols).
    Moonlight,
}

impl Scale {
    /// Multiplier for one orthogonalised (rows × cols) block.
    pub fn factor(self, rows: usize, cols: usize) -> f64 {
        let (r, c) = (rows as f64, cols as f64);
        match self {
            Scale::Record4 => r.max(c).sqrt(),
            Scale::Original => (r / c).max(1.0).sqrt(),
            Scale::Moonlight => 0.2 * r.max(c).sqrt(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MuonConfig {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub ns_steps: usize,
    pub scale: Scale,
    pub weight_decay: f64,
}

impl Default for MuonConfig {
    /// Record 4: lr 0.00036, momentum 0.95, Nesterov, 5 NS steps, wd 0.
    fn default() -> Self {
        MuonConfig {
            lr: 0.00036,
            momentum: 0.95,
            nesterov: true,
            ns_steps: 5,
            scale: Scale::Record4,
            weight_decay: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewtonMuonConfig {
    /// NM-1: Muon lr 0.0004.
    pub lr: f64,
    /// NM-1: head AdamW lr 0.004 (other head settings from `[optim.head]`).
    pub head_lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub ns_steps: usize,
    pub scale: Scale,
    pub weight_decay: f64,
    /// Statistics are gathered and refreshed on the steps with `(step + 1) % refresh == 0`
    /// (steps R−1, 2R−1, …; NM-1's phase), plain Muon before the first.
    pub refresh: usize,
    /// EMA weight α of a fresh statistic: S ← (1 − α)S + αC.
    pub ema: f64,
    /// Ridge as a fraction of the mean eigenvalue: K = S + (ridge·tr(S)/in + 1e-8)·I.
    pub ridge: f64,
    /// S₀ = init·I.
    pub init: f64,
    /// Block size of the block-diagonal statistic for inputs wider than it (0 = n_embd, i.e. the
    /// `in` of the c_attn matrices: mlp.c_proj then gets 4 diagonal d×d blocks).
    pub block: usize,
}

impl Default for NewtonMuonConfig {
    fn default() -> Self {
        NewtonMuonConfig {
            lr: 0.0004,
            head_lr: 0.004,
            momentum: 0.95,
            nesterov: true,
            ns_steps: 5,
            scale: Scale::Record4,
            weight_decay: 0.0,
            refresh: 32,
            ema: 0.05,
            ridge: 0.2,
            init: 0.001,
            block: 0,
        }
    }
}

/// Which nuclear-norm step Neon takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NeonForm {
    /// δW = −lr·scale·u₁v₁ᵀ (the authors' LMO form).
    Lmo,
    /// δW = −lr·σ₁·u₁v₁ᵀ (the steepest-descent form, 1/(2λ) = lr).
    Sigma,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NeonConfig {
    /// Default 0.00036 with the record-4 scale: the LMO update then has the same spectral norm
    /// (lr·√max(rows, cols)) as one record-4 Muon update, so the two are compared at equal step
    /// size along the top direction. In the "sigma" form the update is lr·σ₁ (gradient units)
    /// and the lr must be swept; there is no published value.
    pub lr: f64,
    pub form: NeonForm,
    pub momentum: f64,
    pub nesterov: bool,
    /// Maximum subspace iterations of the top-triplet solver per step. Measured on the 124M
    /// shapes with power-law + noise momentum matrices: at tol 1e-3 a cold solve takes 2–6
    /// iterations and a warm-started one 1–3, so 8 is a cap that is only reached on
    /// pathological steps.
    pub iters: usize,
    /// Stop when every triplet has residual ‖Mᵀu − σv‖ ≤ tol·σ₁ (1e-3: the vector error is
    /// then ≲ 1e-3/relative gap, well below the step-to-step change of the momentum).
    pub tol: f64,
    /// Extra vectors in the iterated block (faster convergence when σ₁ ≈ σ₂).
    pub oversample: usize,
    pub scale: Scale,
    pub weight_decay: f64,
}

impl Default for NeonConfig {
    fn default() -> Self {
        NeonConfig {
            lr: 0.00036,
            form: NeonForm::Lmo,
            momentum: 0.95,
            nesterov: true,
            iters: 8,
            tol: 1e-3,
            oversample: 4,
            scale: Scale::Record4,
            weight_decay: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NeonFStarConfig {
    /// δW = −lr·U·diag([σ − τ]₊)·Vᵀ is in gradient units (like SGD), so the lr is SGD-like; the
    /// default 0.05 is a sweep starting point, not a published value.
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    /// Most triplets computed per matrix; if σ above the τ cut-off is still not reached the update
    /// uses the τ of the computed ones and `truncated` is counted.
    pub max_rank: usize,
    pub iters: usize,
    pub tol: f64,
    pub oversample: usize,
    pub weight_decay: f64,
}

impl Default for NeonFStarConfig {
    fn default() -> Self {
        NeonFStarConfig {
            lr: 0.05,
            momentum: 0.95,
            nesterov: true,
            max_rank: 16,
            iters: 8,
            tol: 1e-3,
            oversample: 4,
            weight_decay: 0.0,
        }
    }
}
