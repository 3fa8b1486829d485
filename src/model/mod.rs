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

pub mod arch;
mod attention;
mod blocks;
pub mod decoder;
mod forward;
pub mod generate;
mod head;
mod head_cpu;
mod io;
pub mod layers;
mod mlp_block;
pub mod params;
mod rows;
pub mod sampling;
#[cfg(test)]
mod tests;
mod xent;

pub use params::{BlockNames, Lin, ParamNames, LM_HEAD_ALIAS, WTE};

/// Shape and architecture of the model. Any width, depth, head count and sequence length is
/// allowed; the architecture fields default to record 4 (docs/model.md) and Track 3 sets them
/// (docs/track3.md). Defaults are left out of a saved config.
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
    /// Width of one head; 0: n_embd / n_head. When given, n_head · head_dim must be n_embd.
    #[serde(default, skip_serializing_if = "arch::is_zero_usize")]
    pub head_dim: usize,
    /// The parameters' state_dict names.
    #[serde(default, skip_serializing_if = "arch::is_default")]
    pub names: arch::Names,
    /// RMSNorms with a learnable gain per channel (init 1); weightless when false.
    #[serde(default, skip_serializing_if = "arch::is_false")]
    pub norm_gains: bool,
    /// The RMSNorms' epsilon (record 4: 1e-6; Track 3's F.rms_norm default: fp32's machine
    /// epsilon, 1.1920928955078125e-7).
    #[serde(
        default = "arch::default_norm_eps",
        skip_serializing_if = "arch::is_default_norm_eps"
    )]
    pub norm_eps: f64,
    /// An RMSNorm right after the embedding.
    #[serde(default, skip_serializing_if = "arch::is_false")]
    pub embed_norm: bool,
    /// A weightless RMSNorm on q and k per head, before rotary.
    #[serde(default, skip_serializing_if = "arch::is_false")]
    pub qk_norm: bool,
    /// A bias on every Linear, the head included.
    #[serde(default, skip_serializing_if = "arch::is_false")]
    pub bias: bool,
    #[serde(default, skip_serializing_if = "arch::is_default")]
    pub mlp: arch::Activation,
    #[serde(default, skip_serializing_if = "arch::is_default")]
    pub rotary: arch::Rotary,
    /// Attention's softmax scale; 0: 1/√head_dim.
    #[serde(default, skip_serializing_if = "arch::is_zero_f64")]
    pub attn_scale: f64,
    /// Scale the attention branch by 1/√(2·n_layer) before adding it (record 4).
    #[serde(default = "arch::yes", skip_serializing_if = "arch::is_true")]
    pub scale_attn_branch: bool,
    /// The head shares the embedding matrix (record 4).
    #[serde(default = "arch::yes", skip_serializing_if = "arch::is_true")]
    pub tied_head: bool,
    /// Logit softcap c: z ↦ c·z/√(z² + c²) (Track 3: 15); 0: none.
    #[serde(default, skip_serializing_if = "arch::is_zero_f64")]
    pub softcap: f64,
    #[serde(default, skip_serializing_if = "arch::is_default")]
    pub loss: arch::Reduction,
    #[serde(default, skip_serializing_if = "arch::is_default")]
    pub init: arch::Init,
    #[serde(default, skip_serializing_if = "arch::is_default")]
    pub residual: arch::Residual,
}

fn default_rope_base() -> f64 {
    10000.0
}

impl GptConfig {
    /// Record 4: 12 layers, 12 heads, width 768, vocab 50257, T = 1024 (123,532,032 parameters).
    pub fn record4() -> Self {
        Self::record4_shaped(50257, 12, 12, 768, 1024)
    }

    /// A record-4 architecture of the given shape.
    pub fn record4_shaped(
        vocab_size: usize,
        n_layer: usize,
        n_head: usize,
        n_embd: usize,
        seq_len: usize,
    ) -> Self {
        GptConfig {
            vocab_size,
            n_layer,
            n_head,
            n_embd,
            seq_len,
            rope_base: 10000.0,
            head_dim: 0,
            names: arch::Names::Record4,
            norm_gains: false,
            norm_eps: arch::RECORD4_NORM_EPS,
            embed_norm: false,
            qk_norm: false,
            bias: false,
            mlp: arch::Activation::Gelu,
            rotary: arch::Rotary::Full,
            attn_scale: 0.0,
            scale_attn_branch: true,
            tied_head: true,
            softcap: 0.0,
            loss: arch::Reduction::Mean,
            init: arch::Init::PytorchDefault,
            residual: arch::Residual::Fp32,
        }
    }

    /// Track 3's architecture (docs/track3.md) of the given shape: width `n_embd` in heads of
    /// `head_dim` (Track 3: 768 in 6 × 128, vocab 50304, 12 layers, T = 1024).
    pub fn track3_shaped(
        vocab_size: usize,
        n_layer: usize,
        n_embd: usize,
        head_dim: usize,
        seq_len: usize,
    ) -> Self {
        GptConfig {
            head_dim,
            names: arch::Names::Track3,
            norm_gains: true,
            norm_eps: f32::EPSILON as f64,
            embed_norm: true,
            qk_norm: true,
            bias: true,
            mlp: arch::Activation::Relu2,
            rotary: arch::Rotary::HalfTruncated,
            attn_scale: 0.12,
            scale_attn_branch: false,
            tied_head: false,
            softcap: 15.0,
            loss: arch::Reduction::Sum,
            init: arch::Init::Track3,
            residual: arch::Residual::Compute,
            ..Self::record4_shaped(
                vocab_size,
                n_layer,
                n_embd / head_dim.max(1),
                n_embd,
                seq_len,
            )
        }
    }

    /// Number of trainable parameters (a tied head counted once).
    pub fn num_params(&self) -> usize {
        self.param_shapes()
            .values()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        if self.head_dim == 0 {
            self.n_embd / self.n_head.max(1)
        } else {
            self.head_dim
        }
    }

    /// The softmax scale of attention.
    pub fn softmax_scale(&self) -> f64 {
        if self.attn_scale == 0.0 {
            1.0 / (self.head_dim() as f64).sqrt()
        } else {
            self.attn_scale
        }
    }

    /// Whether this is record 4's architecture (any shape and rotary base).
    pub fn is_record4_arch(&self) -> bool {
        let s = self;
        let mut c = self.clone();
        c.rope_base = 10000.0;
        if s.head_dim * s.n_head == s.n_embd {
            c.head_dim = 0;
        }
        c == Self::record4_shaped(s.vocab_size, s.n_layer, s.n_head, s.n_embd, s.seq_len)
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

/// The GPT of `cfg`'s architecture. Parameters are fp32 `Var`s keyed by PyTorch state_dict
/// name.
pub struct Gpt {
    pub cfg: GptConfig,
    vars: BTreeMap<String, Var>,
    device: Device,
    /// Every parameter's PyTorch name by role, built once so a forward allocates no names.
    names: ParamNames,
    /// Rotary tables and causal mask per sequence length T, built on first use (see `forward.rs`).
    tables: Mutex<HashMap<usize, forward::Tables>>,
    /// Whether fp32 CPU forwards use the fused sub-blocks (`blocks.rs`); the tests turn it off
    /// to compare them with the primitive path.
    fused_blocks: bool,
}

impl Gpt {
    /// Fresh weights by `cfg.init` (record 4: PyTorch's default, U(±1/√fan_in)), deterministic
    /// in `seed`.
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
            names: ParamNames::new(cfg),
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

    /// Cross-entropy of next-token prediction, reduced as `cfg.loss` says (the mean over tokens,
    /// or their sum), as a scalar fp32 tensor with a graph. `idx`, `targets`: (B, T) u32.
    /// `compute`: F32 or BF16 (weights are cast inside; norms, softmax and the loss stay fp32).
    /// `sink` receives layer inputs when given.
    pub fn loss(
        &self,
        idx: &Tensor,
        targets: &Tensor,
        compute: DType,
        sink: Option<&mut dyn LayerInputSink>,
    ) -> Result<Tensor> {
        let (h, head, targets) = self.head_inputs(idx, targets, compute, sink, false)?;
        head::head_loss(&h, &head, &targets, compute, head::HEAD_CHUNK_TOKENS, true)
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
        let mean = xent::cross_entropy(&logits, targets)?;
        Ok(match self.cfg.loss {
            arch::Reduction::Mean => mean,
            arch::Reduction::Sum => (mean * targets.elem_count() as f64)?,
        })
    }

    /// Hidden states (N, d), the head, and the targets (N,) u32, checked against `idx`.
    fn head_inputs(
        &self,
        idx: &Tensor,
        targets: &Tensor,
        compute: DType,
        sink: Option<&mut dyn LayerInputSink>,
        detached: bool,
    ) -> Result<(Tensor, head::Head, Tensor)> {
        let h = self.hidden(idx, compute, sink, detached)?;
        let (b, t, d) = h.dims3()?;
        let targets = xent::check_targets(targets, (b, t))?;
        Ok((h.reshape((b * t, d))?, self.head(detached)?, targets))
    }

    /// Logits (B, T, vocab) in fp32 (after the softcap, when the model has one), with a graph.
    pub fn logits(
        &self,
        idx: &Tensor,
        compute: DType,
        sink: Option<&mut dyn LayerInputSink>,
    ) -> Result<Tensor> {
        self.forward(idx, compute, sink, false)
    }

    /// The mean loss per token on detached weights, whatever `cfg.loss` (validation reports
    /// it): builds no autograd graph.
    pub fn eval_loss(&self, idx: &Tensor, targets: &Tensor, compute: DType) -> Result<f32> {
        let (h, head, targets) = self.head_inputs(idx, targets, compute, None, true)?;
        let n = targets.elem_count();
        let loss = head::head_loss(&h, &head, &targets, compute, head::HEAD_CHUNK_TOKENS, false)?;
        if loss.track_op() {
            bail!("model: eval_loss built an autograd graph (a weight was not detached)");
        }
        let loss = loss.to_scalar::<f32>()?;
        Ok(match self.cfg.loss {
            arch::Reduction::Mean => loss,
            arch::Reduction::Sum => (loss as f64 / n as f64) as f32,
        })
    }
}
