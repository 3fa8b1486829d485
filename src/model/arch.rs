//! The architecture choices of [`super::GptConfig`]: everything that separates modded-nanogpt's
//! Track 3 (`records/track_3_optimization/train_gpt_simple.py`, docs/track3.md) from record 4
//! (docs/model.md). Every field defaults to record 4 and is left out of a saved config when it
//! has that value, so record-4 configs (and their resume hashes) are unchanged.

use serde::{Deserialize, Serialize};

/// Which state_dict names the parameters carry (docs/model.md, "Parameter names").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Names {
    /// Record 4's: `transformer.wte.weight`, a packed `transformer.h.{i}.attn.c_attn.weight`, ….
    #[default]
    Record4,
    /// Track 3's: `embed.weight`, `blocks.{i}.attn.{q,k,v,proj}`, `blocks.{i}.mlp.{fc,proj}`,
    /// `blocks.{i}.norm{1,2}.gains`, `norm{1,2}.gains`, `proj` (the head).
    Track3,
}

/// The MLP's nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Exact (erf) GELU, record 4.
    #[default]
    Gelu,
    /// relu(x)², Track 3 (train_gpt_simple.py:124).
    Relu2,
}

/// How rotary frequencies are laid out over a head's channel pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rotary {
    /// base^(−2j/head_dim) for every pair j (record 4, base `rope_base`).
    #[default]
    Full,
    /// head_dim/4 frequencies from 1 down to 1/1024 (geometric), then head_dim/4 zeros: the
    /// last quarter of the pairs is not rotated (Track 3, train_gpt_simple.py:74-79).
    HalfTruncated,
}

/// How the loss of a batch is reduced over its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// Mean over tokens; micro-batch gradients are averaged (record 4).
    #[default]
    Mean,
    /// Sum over tokens; micro-batch and rank gradients are summed, so a step's gradient is the
    /// sum over all its tokens (Track 3, train_gpt_simple.py:156, :359, :362).
    Sum,
}

/// How fresh weights are drawn (docs/model.md, "Initialisation"; docs/track3.md, "Init").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// PyTorch's defaults: every Linear weight and bias U(±1/√fan_in), an untied embedding
    /// N(0, 1), gains 1 (record 4; its tied matrix is initialised as the head).
    #[default]
    PytorchDefault,
    /// Track 3 (train_gpt_simple.py:270-284): weights named `proj` zero, the embedding N(0, 1),
    /// other weights N(0, 0.33/fan_in), biases 0, gains 1.
    Track3,
    /// Track 3's first baseline (result #2's log): parameters named `proj` zero, weights and
    /// biases included, everything else PyTorch's default.
    Track3Legacy,
}

/// The dtype of the residual stream when the compute dtype is bf16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Residual {
    /// fp32, as under PyTorch autocast, where the embedding's output stays fp32 (record 4).
    #[default]
    Fp32,
    /// The compute dtype: Track 3 keeps its embedding in bf16 with no autocast, so every
    /// activation is bf16 (train_gpt_simple.py:144).
    Compute,
}

pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

pub(crate) fn is_true(b: &bool) -> bool {
    *b
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn yes() -> bool {
    true
}

/// Record 4's RMSNorm epsilon.
pub const RECORD4_NORM_EPS: f64 = 1e-6;

pub(crate) fn default_norm_eps() -> f64 {
    RECORD4_NORM_EPS
}

pub(crate) fn is_default_norm_eps(e: &f64) -> bool {
    *e == RECORD4_NORM_EPS
}

pub(crate) fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

pub(crate) fn is_zero_usize(x: &usize) -> bool {
    *x == 0
}
