//! Parameter names, shapes and the seeded PyTorch-default initialisation.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::GptConfig;

/// Name of the tied embedding/head matrix (PyTorch also saves it as [`LM_HEAD_ALIAS`]).
pub const WTE: &str = "transformer.wte.weight";
/// PyTorch's second name for the tied matrix, accepted on load.
pub const LM_HEAD_ALIAS: &str = "lm_head.weight";

/// PyTorch names of the four hidden Linears of block `i`.
#[derive(Debug, Clone)]
pub struct BlockNames {
    pub c_attn: String,
    pub attn_proj: String,
    pub c_fc: String,
    pub mlp_proj: String,
}

impl BlockNames {
    pub fn new(i: usize) -> Self {
        BlockNames {
            c_attn: format!("transformer.h.{i}.attn.c_attn.weight"),
            attn_proj: format!("transformer.h.{i}.attn.c_proj.weight"),
            c_fc: format!("transformer.h.{i}.mlp.c_fc.weight"),
            mlp_proj: format!("transformer.h.{i}.mlp.c_proj.weight"),
        }
    }
}

impl GptConfig {
    /// Reject shapes the model cannot build (zero sizes, width not divisible by heads, odd head_dim
    /// which the half-split rotary cannot pair).
    pub fn validate(&self) -> Result<()> {
        let c = self;
        if c.vocab_size == 0 || c.n_layer == 0 || c.n_head == 0 || c.n_embd == 0 || c.seq_len == 0 {
            bail!("model config: vocab_size, n_layer, n_head, n_embd and seq_len must all be > 0 ({c:?})");
        }
        if !c.n_embd.is_multiple_of(c.n_head) {
            bail!(
                "model config: n_embd {} is not divisible by n_head {}",
                c.n_embd,
                c.n_head
            );
        }
        if !(c.n_embd / c.n_head).is_multiple_of(2) {
            bail!(
                "model config: head_dim {} must be even for rotary",
                c.n_embd / c.n_head
            );
        }
        if !(c.rope_base.is_finite() && c.rope_base > 0.0) {
            bail!(
                "model config: rope_base {} must be finite and > 0",
                c.rope_base
            );
        }
        Ok(())
    }

    /// Every parameter as (name, (out, in)), in sorted name order (the order init draws in).
    /// Shapes follow torch.nn.Linear (out_features, in_features); the tied matrix is (vocab, d).
    pub fn param_shapes(&self) -> BTreeMap<String, (usize, usize)> {
        let d = self.n_embd;
        let mut m = BTreeMap::new();
        m.insert(WTE.to_string(), (self.vocab_size, d));
        for i in 0..self.n_layer {
            let n = BlockNames::new(i);
            m.insert(n.c_attn, (3 * d, d));
            m.insert(n.attn_proj, (d, d));
            m.insert(n.c_fc, (4 * d, d));
            m.insert(n.mlp_proj, (d, 4 * d));
        }
        m
    }
}

/// PyTorch default init: U(±1/√fan_in) for every Linear weight (kaiming_uniform with a = √5 reduces
/// to this bound); the tied matrix is initialised as nn.Linear(d, vocab), i.e. U(±1/√d)
/// (docs/model.md, "Initialisation"). Values come from one `StdRng::seed_from_u64(seed)` drawn on the host in
/// sorted name order, so a seed gives the same weights on every device.
pub fn init_vars(cfg: &GptConfig, device: &Device, seed: u64) -> Result<BTreeMap<String, Var>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut vars = BTreeMap::new();
    for (name, (out_f, in_f)) in cfg.param_shapes() {
        let bound = 1.0 / (in_f as f32).sqrt();
        let data: Vec<f32> = (0..out_f * in_f)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let t = Tensor::from_vec(data, (out_f, in_f), device)?;
        vars.insert(name, Var::from_tensor(&t)?);
    }
    Ok(vars)
}
