//! The GPT of modded-nanogpt record 4 (docs/model.md): rotary attention, weightless RMSNorm,
//! exact-GELU MLP, tied embedding/head, parameters under their PyTorch state_dict names.
//!
//! [`Gpt::loss`] builds an autograd graph; [`Gpt::eval_loss`] runs on detached weights and does
//! not. [`LayerInputSink`] is the hook through which an optimizer (Newton-Muon) sees the input of
//! every hidden Linear. [`Gpt::decoder`] (a KV cache) and [`generate::generate`] write text;
//! [`sampling`] picks the tokens.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

mod attention;
mod blocks;
pub mod decoder;
mod forward;
pub mod generate;
mod head;
mod head_cpu;
mod io;
pub mod layers;
pub mod params;
mod rows;
pub mod sampling;
#[cfg(test)]
mod tests;
mod xent;

use params::BlockNames;
pub use params::{LM_HEAD_ALIAS, WTE};

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
        GptConfig {
            vocab_size: 50257,
            n_layer: 12,
            n_head: 12,
            n_embd: 768,
            seq_len: 1024,
            rope_base: 10000.0,
        }
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
    device: Device,
    /// PyTorch names of each block's hidden Linears, built once so a forward allocates no names.
    block_names: Vec<BlockNames>,
    /// Rotary tables and causal mask per sequence length T, built on first use (see `forward.rs`).
    tables: Mutex<HashMap<usize, forward::Tables>>,
    /// Whether fp32 CPU forwards use the fused sub-blocks (`blocks.rs`); the tests turn it off
    /// to compare them with the primitive path.
    fused_blocks: bool,
}

impl Gpt {
    /// Fresh weights with PyTorch default init (U(±1/√fan_in)), deterministic in `seed`.
    pub fn new(cfg: &GptConfig, device: &Device, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let vars = params::init_vars(cfg, device, seed)?;
        Ok(Self::from_vars(cfg, vars, device))
    }

    fn from_vars(cfg: &GptConfig, vars: BTreeMap<String, Var>, device: &Device) -> Self {
        Gpt {
            cfg: cfg.clone(),
            vars,
            device: device.clone(),
            block_names: (0..cfg.n_layer).map(BlockNames::new).collect(),
            tables: Mutex::new(HashMap::new()),
            fused_blocks: true,
        }
    }

    /// Load weights written by [`Gpt::save_safetensors`] or by PyTorch (`lm_head.weight` accepted
    /// as an alias of the tied matrix). Errors name the file and the offending tensor.
    pub fn from_safetensors(cfg: &GptConfig, path: &Path, device: &Device) -> Result<Self> {
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let vars = io::load(cfg, path, device)?;
        Ok(Self::from_vars(cfg, vars, device))
    }

    /// Write the weights (fp32, PyTorch names) to `path` (callers handle atomicity).
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        io::save(&self.vars, path)
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
        let (h, w, targets) = self.head_inputs(idx, targets, compute, sink, false)?;
        head::head_loss(&h, &w, &targets, compute, head::HEAD_CHUNK_TOKENS, true)
    }

    /// The unchunked loss: the full logits, then the cross-entropy (the reference the chunked
    /// head is checked against).
    pub fn loss_unchunked(
        &self,
        idx: &Tensor,
        targets: &Tensor,
        compute: DType,
        sink: Option<&mut dyn LayerInputSink>,
    ) -> Result<Tensor> {
        let logits = self.forward(idx, compute, sink, false)?;
        xent::cross_entropy(&logits, targets)
    }

    /// Hidden states (N, d), the tied weight, and the targets (N,) u32, checked against `idx`.
    fn head_inputs(
        &self,
        idx: &Tensor,
        targets: &Tensor,
        compute: DType,
        sink: Option<&mut dyn LayerInputSink>,
        detached: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (h, w) = self.hidden(idx, compute, sink, detached)?;
        let (b, t, d) = h.dims3()?;
        let targets = xent::check_targets(targets, (b, t))?;
        Ok((h.reshape((b * t, d))?, w, targets))
    }

    /// Logits (B, T, vocab) in fp32, with a graph.
    pub fn logits(
        &self,
        idx: &Tensor,
        compute: DType,
        sink: Option<&mut dyn LayerInputSink>,
    ) -> Result<Tensor> {
        self.forward(idx, compute, sink, false)
    }

    /// Loss on detached weights: builds no autograd graph (validation).
    pub fn eval_loss(&self, idx: &Tensor, targets: &Tensor, compute: DType) -> Result<f32> {
        let (h, w, targets) = self.head_inputs(idx, targets, compute, None, true)?;
        let loss = head::head_loss(&h, &w, &targets, compute, head::HEAD_CHUNK_TOKENS, false)?;
        if loss.track_op() {
            bail!("model: eval_loss built an autograd graph (a weight was not detached)");
        }
        Ok(loss.to_scalar::<f32>()?)
    }
}
