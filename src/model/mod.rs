//! The modded-nanogpt record-4 GPT (`../shared/spec/record4.md`): rotary attention, weightless
//! RMSNorm, ReLU-free exact-GELU MLP, tied embedding/head, PyTorch parameter names.
//!
//! INTERFACE CONTRACT (used by `optim` and `train`; keep these signatures):
//! - [`GptConfig`]: serde, with `record4()`.
//! - [`Gpt::new`], [`Gpt::from_safetensors`], [`Gpt::save_safetensors`], [`Gpt::vars`].
//! - [`Gpt::loss`] builds a graph; [`Gpt::eval_loss`] does not.
//! - [`LayerInputSink`]: the hook through which Newton-Muon sees each hidden Linear's input.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

/// Shape of the model. Any width, depth, head count and sequence length is allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GptConfig {
    pub vocab_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// Maximum sequence length (rotary tables are built for this many positions).
    pub seq_len: usize,
    #[serde(default = "default_rope_base")]
    pub rope_base: f64,
}

fn default_rope_base() -> f64 {
    10000.0
}

impl GptConfig {
    /// Record 4: 12 layers, 12 heads, width 768, vocab 50257, T = 1024 (123,532,032 parameters).
    pub fn record4() -> Self {
        GptConfig { vocab_size: 50257, n_layer: 12, n_head: 12, n_embd: 768, seq_len: 1024, rope_base: 10000.0 }
    }

    /// Number of trainable parameters (tied head counted once).
    pub fn num_params(&self) -> usize {
        let d = self.n_embd;
        self.vocab_size * d + self.n_layer * (3 * d * d + d * d + 4 * d * d + 4 * d * d)
    }
}

/// Receives the input activations of the hidden Linears during a forward pass.
///
/// `weight_name` is the PyTorch name of the Linear's weight (e.g. `transformer.h.3.mlp.c_fc.weight`);
/// `x` is the layer input flattened to `(N, in_features)`, detached from the graph, in fp32.
/// q/k/v share one call (the packed `c_attn` input), `attn.c_proj` sees the attention output,
/// `mlp.c_fc` the MLP input and `mlp.c_proj` the 4·d GELU output.
pub trait LayerInputSink {
    fn record(&mut self, weight_name: &str, x: &Tensor) -> Result<()>;
}

/// The record-4 GPT. Parameters are fp32 `Var`s keyed by PyTorch state_dict name.
pub struct Gpt {
    pub cfg: GptConfig,
    vars: BTreeMap<String, Var>,
}

impl Gpt {
    /// Fresh weights with PyTorch default init (U(±1/√fan_in)), deterministic in `seed`.
    pub fn new(cfg: &GptConfig, device: &Device, seed: u64) -> Result<Self> {
        let _ = (cfg, device, seed);
        todo!("model issue")
    }

    /// Load weights written by [`Gpt::save_safetensors`] or by PyTorch (`lm_head.weight` accepted
    /// as an alias of the tied matrix). Errors name the file and the offending tensor.
    pub fn from_safetensors(cfg: &GptConfig, path: &Path, device: &Device) -> Result<Self> {
        let _ = (cfg, path, device);
        todo!("model issue")
    }

    /// Write the weights (fp32, PyTorch names) to `path` (callers handle atomicity).
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let _ = path;
        todo!("model issue")
    }

    /// All trainable parameters, sorted by name.
    pub fn vars(&self) -> &BTreeMap<String, Var> {
        &self.vars
    }

    /// Mean cross-entropy of next-token prediction, as a scalar fp32 tensor with a graph.
    /// `idx`, `targets`: (B, T) u32. `compute`: F32 or BF16 (weights are cast inside; norms,
    /// softmax and the loss stay fp32). `sink` receives layer inputs when given.
    pub fn loss(
        &self,
        idx: &Tensor,
        targets: &Tensor,
        compute: DType,
        sink: Option<&mut dyn LayerInputSink>,
    ) -> Result<Tensor> {
        let _ = (idx, targets, compute, sink);
        todo!("model issue")
    }

    /// Logits (B, T, vocab) in fp32, with a graph.
    pub fn logits(&self, idx: &Tensor, compute: DType, sink: Option<&mut dyn LayerInputSink>) -> Result<Tensor> {
        let _ = (idx, compute, sink);
        todo!("model issue")
    }

    /// Loss on detached weights: builds no autograd graph (validation).
    pub fn eval_loss(&self, idx: &Tensor, targets: &Tensor, compute: DType) -> Result<f32> {
        let _ = (idx, targets, compute);
        todo!("model issue")
    }
}
