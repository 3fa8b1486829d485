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
    /// `--optim adamw`: every parameter on AdamW (record-2 style), or only the block matrices
    /// (`scope = "matrices"`, Track 3's result #2), the rest on the auxiliary groups.
    #[serde(deserialize_with = "de_all")]
    pub adamw: AdamWConfig,
    /// The auxiliary AdamW groups of an untied model (Track 3): the token embedding, the head's
    /// weight, and every 1-D parameter (biases, norm gains). Defaults: the tuned baseline's
    /// (result #36). A tied model uses `head` for its embedding and 1-D parameters.
    #[serde(
        deserialize_with = "de_embed",
        skip_serializing_if = "AdamWConfig::is_embed"
    )]
    pub embed: AdamWConfig,
    #[serde(
        deserialize_with = "de_lm_head",
        skip_serializing_if = "AdamWConfig::is_lm_head"
    )]
    pub lm_head: AdamWConfig,
    #[serde(
        deserialize_with = "de_scalars",
        skip_serializing_if = "AdamWConfig::is_scalars"
    )]
    pub scalars: AdamWConfig,
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
            embed: AdamWConfig::embed(),
            lm_head: AdamWConfig::lm_head(),
            scalars: AdamWConfig::scalars(),
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
    /// `optim.adamw` only: every parameter ("all", record 2) or the block matrices alone
    /// ("matrices", Track 3's result #2, the others on the auxiliary groups).
    #[serde(default, skip_serializing_if = "AdamScope::is_all")]
    pub scope: AdamScope,
}

/// What `--optim adamw` puts on `optim.adamw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdamScope {
    #[default]
    All,
    Matrices,
}

impl AdamScope {
    fn is_all(&self) -> bool {
        *self == AdamScope::All
    }
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
            scope: AdamScope::All,
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
            scope: AdamScope::All,
        }
    }
    /// Track 3's auxiliary group (train_gpt_simple.py:287-290): betas (0.8, 0.95), eps 1e-10,
    /// wd 0.001, at learning rate `lr`.
    fn track3_aux(lr: f64) -> Self {
        AdamWConfig {
            lr,
            betas: (0.8, 0.95),
            eps: 1e-10,
            weight_decay: 0.001,
            decay_embedding: true,
            scope: AdamScope::All,
        }
    }
    /// Track 3's embedding group: lr 0.7.
    pub fn embed() -> Self {
        Self::track3_aux(0.7)
    }
    /// Track 3's head-weight group: lr 0.004.
    pub fn lm_head() -> Self {
        Self::track3_aux(0.004)
    }
    /// Track 3's group of 1-D parameters: lr 0.015.
    pub fn scalars() -> Self {
        Self::track3_aux(0.015)
    }
    fn is_embed(&self) -> bool {
        *self == Self::embed()
    }
    fn is_lm_head(&self) -> bool {
        *self == Self::lm_head()
    }
    fn is_scalars(&self) -> bool {
        *self == Self::scalars()
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
    scope: Option<AdamScope>,
}

impl AdamWPartial {
    fn fill(self, d: AdamWConfig) -> AdamWConfig {
        AdamWConfig {
            lr: self.lr.unwrap_or(d.lr),
            betas: self.betas.unwrap_or(d.betas),
            eps: self.eps.unwrap_or(d.eps),
            weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
            decay_embedding: self.decay_embedding.unwrap_or(d.decay_embedding),
            scope: self.scope.unwrap_or(d.scope),
        }
    }
}

fn de_head<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AdamWConfig, D::Error> {
    Ok(AdamWPartial::deserialize(d)?.fill(AdamWConfig::head()))
}

fn de_all<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AdamWConfig, D::Error> {
    Ok(AdamWPartial::deserialize(d)?.fill(AdamWConfig::all_params()))
}

fn de_embed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AdamWConfig, D::Error> {
    Ok(AdamWPartial::deserialize(d)?.fill(AdamWConfig::embed()))
}

fn de_lm_head<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AdamWConfig, D::Error> {
    Ok(AdamWPartial::deserialize(d)?.fill(AdamWConfig::lm_head()))
}

fn de_scalars<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AdamWConfig, D::Error> {
    Ok(AdamWPartial::deserialize(d)?.fill(AdamWConfig::scalars()))
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

/// How the momentum buffer and the Nesterov direction are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MomentumForm {
    /// B ← μ·B + G; U = G + μ·B (record 4, train_gpt2.py:92-94).
    #[default]
    Sgd,
    /// M ← lerp(M, G, 1 − μ); U = lerp(G, M, μ) (Track 3, train_gpt_simple.py:184-185): the
    /// same direction scaled by 1 − μ, which Newton–Schulz normalises away except for its
    /// epsilon and bf16 rounding.
    Ema,
}

/// One family's learning rate and weight decay, overriding its group's (Track 3's Newton-Muon
/// entry tunes them per family).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyRates {
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
}

/// Per-family overrides of the matrix optimizer's lr and wd: q/k/v (a packed c_attn too),
/// the attention output, the MLP's first and second matrix.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Families {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qkv: Option<FamilyRates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_proj: Option<FamilyRates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_fc: Option<FamilyRates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_proj: Option<FamilyRates>,
}

impl Families {
    pub fn is_empty(&self) -> bool {
        *self == Families::default()
    }

    /// The overrides of the family parameter `name` belongs to (by its PyTorch name).
    pub fn of(&self, name: &str) -> Option<FamilyRates> {
        let ends = |s: &[&str]| s.iter().any(|x| name.ends_with(x));
        if ends(&[
            "attn.c_attn.weight",
            "attn.q.weight",
            "attn.k.weight",
            "attn.v.weight",
        ]) {
            self.qkv
        } else if ends(&["attn.c_proj.weight", "attn.proj.weight"]) {
            self.attn_proj
        } else if ends(&["mlp.c_fc.weight", "mlp.fc.weight"]) {
            self.mlp_fc
        } else if ends(&["mlp.c_proj.weight", "mlp.proj.weight"]) {
            self.mlp_proj
        } else {
            None
        }
    }

    /// Every (family, rates) given, for validation.
    pub fn given(&self) -> Vec<(&'static str, FamilyRates)> {
        [
            ("qkv", self.qkv),
            ("attn_proj", self.attn_proj),
            ("mlp_fc", self.mlp_fc),
            ("mlp_proj", self.mlp_proj),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

fn is_record4_coeffs(c: &(f64, f64, f64)) -> bool {
    *c == super::newton_schulz::NS_COEFFS
}

fn record4_coeffs() -> (f64, f64, f64) {
    super::newton_schulz::NS_COEFFS
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
    #[serde(skip_serializing_if = "crate::model::arch::is_default")]
    pub momentum_form: MomentumForm,
    /// Newton–Schulz coefficients (a, b, c) (record 4's quintic; Track 3: (2, −1.5, 0.5)).
    #[serde(default = "record4_coeffs", skip_serializing_if = "is_record4_coeffs")]
    pub ns_coeffs: (f64, f64, f64),
    /// How bf16 Newton–Schulz rounds: "record4", "nm1" or "track3" (docs/optimizers.md).
    #[serde(skip_serializing_if = "crate::model::arch::is_default")]
    pub ns_form: super::newton_schulz::NsForm,
    #[serde(skip_serializing_if = "Families::is_empty")]
    pub families: Families,
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
            momentum_form: MomentumForm::Sgd,
            ns_coeffs: super::newton_schulz::NS_COEFFS,
            ns_form: super::newton_schulz::NsForm::Record4,
            families: Families::default(),
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
    #[serde(skip_serializing_if = "crate::model::arch::is_default")]
    pub momentum_form: MomentumForm,
    #[serde(default = "record4_coeffs", skip_serializing_if = "is_record4_coeffs")]
    pub ns_coeffs: (f64, f64, f64),
    /// NM-1's bf16 form by default (train_gpt_newton_muon_1.py:86-91).
    #[serde(default = "nm1_form", skip_serializing_if = "is_nm1_form")]
    pub ns_form: super::newton_schulz::NsForm,
    #[serde(skip_serializing_if = "Families::is_empty")]
    pub families: Families,
}

fn nm1_form() -> super::newton_schulz::NsForm {
    super::newton_schulz::NsForm::Nm1
}

fn is_nm1_form(f: &super::newton_schulz::NsForm) -> bool {
    *f == super::newton_schulz::NsForm::Nm1
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
            momentum_form: MomentumForm::Sgd,
            ns_coeffs: super::newton_schulz::NS_COEFFS,
            ns_form: super::newton_schulz::NsForm::Nm1,
            families: Families::default(),
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
