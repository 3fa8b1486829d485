//! The cached forward of generation (docs/model.md, "Generation"): a [`Decoder`] keeps every
//! block's rotated keys and its values (a KV cache, candle_nn's `KvCache`), so that each new
//! token costs one forward of one token: its query attends to the cached keys, and its own
//! rotary angle continues from the number of positions already cached.
//!
//! The forward is built piece by piece, one function per piece (embedding, norm, q/k/v, rotary at
//! an offset, attention over the cache, MLP, head), from the same candle ops and casts as the
//! primitive training forward (`forward.rs`), so it runs on any device and compute dtype. The
//! pieces that depend on the architecture are those functions, `block` which composes them, and
//! `Numerics`; another architecture slots in by choosing its pieces there. [`last_logits`] is the
//! training forward's answer to the same question, the reference the tests hold it to
//! (`src/model/tests/generate.rs`).

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::kv_cache::KvCache;

use super::attention::composite;
use super::layers::{apply_rotary, linear, rms_norm, rotary_tables};
use super::params::WTE;
use super::{Gpt, GptConfig};

/// The numbers of record 4's block besides its weights (docs/model.md, "One block"), and the
/// dtype its Linears compute in.
#[derive(Debug, Clone, Copy)]
struct Numerics {
    n_head: usize,
    compute: DType,
    /// Attention scores are q·kᵀ times this: 1/√head_dim.
    softmax_scale: f64,
    /// The attention branch is added to the residual stream times this: 1/√(2·n_layer).
    attn_branch_scale: f64,
}

impl Numerics {
    fn of(cfg: &GptConfig, compute: DType) -> Numerics {
        Numerics {
            n_head: cfg.n_head,
            compute,
            softmax_scale: 1.0 / ((cfg.n_embd / cfg.n_head) as f64).sqrt(),
            attn_branch_scale: 1.0 / (2.0 * cfg.n_layer as f64).sqrt(),
        }
    }
}

/// Where the new tokens of a feed sit: the rotary tables of their positions (T, hd/2) and their
/// additive mask over the cached keys and themselves (T, cached + T).
#[derive(Clone, Copy)]
struct At<'a> {
    cos: &'a Tensor,
    sin: &'a Tensor,
    mask: &'a Tensor,
}

/// One block's weights, detached from the autograd graph.
struct BlockWeights {
    c_attn: Tensor,
    attn_proj: Tensor,
    c_fc: Tensor,
    mlp_proj: Tensor,
}

/// The model's weights and a KV cache per block, for decoding one sequence batch at a time.
pub struct Decoder {
    cfg: GptConfig,
    num: Numerics,
    device: Device,
    wte: Tensor,
    blocks: Vec<BlockWeights>,
    /// Rotary cos/sin for positions 0..seq_len, (seq_len, head_dim/2) fp32.
    cos: Tensor,
    sin: Tensor,
    caches: Vec<KvCache>,
}

impl Gpt {
    /// A decoder over the current weights (shared, not copied; no graph is built), computing
    /// the Linears in `compute` as the training forward does.
    pub fn decoder(&self, compute: DType) -> Result<Decoder> {
        let cfg = &self.cfg;
        let w = |name: &str| -> Result<Tensor> {
            let v = self.vars.get(name);
            let v = v.ok_or_else(|| anyhow::anyhow!("model has no parameter {name}"))?;
            Ok(v.as_detached_tensor())
        };
        let blocks = self
            .block_names
            .iter()
            .map(|n| {
                Ok(BlockWeights {
                    c_attn: w(&n.c_attn)?,
                    attn_proj: w(&n.attn_proj)?,
                    c_fc: w(&n.c_fc)?,
                    mlp_proj: w(&n.mlp_proj)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let hd = cfg.n_embd / cfg.n_head;
        let (cos, sin) = rotary_tables(cfg.seq_len, hd, cfg.rope_base, &self.device)?;
        Ok(Decoder {
            cfg: cfg.clone(),
            num: Numerics::of(cfg, compute),
            device: self.device.clone(),
            wte: w(WTE)?,
            blocks,
            cos,
            sin,
            // Keys and values are (B, H, T, hd): the sequence is dimension 2.
            caches: (0..cfg.n_layer)
                .map(|_| KvCache::new(2, cfg.seq_len))
                .collect(),
        })
    }
}

impl Decoder {
    /// Positions held in the cache (the next token's position).
    pub fn len(&self) -> usize {
        self.caches.first().map_or(0, |c| c.current_seq_len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget every cached position.
    pub fn reset(&mut self) {
        self.caches.iter_mut().for_each(KvCache::reset);
    }

    /// Run `ids` (B, T) u32 at positions len()..len()+T, appending their keys and values to the
    /// cache; returns the logits (B, vocab) fp32 of the last of them.
    pub fn feed(&mut self, ids: &Tensor) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let pos = self.len();
        if t == 0 || pos + t > self.cfg.seq_len {
            bail!(
                "decoder: {t} new tokens after {pos} cached do not fit the context of {}",
                self.cfg.seq_len
            );
        }
        let (cos, sin) = (self.cos.narrow(0, pos, t)?, self.sin.narrow(0, pos, t)?);
        let mask = mask_at(t, pos, &self.device)?;
        let at = At {
            cos: &cos,
            sin: &sin,
            mask: &mask,
        };
        let mut x = embed(&self.wte, ids, self.cfg.n_embd)?;
        for (w, cache) in self.blocks.iter().zip(self.caches.iter_mut()) {
            x = block(&x, w, cache, at, self.num)?;
        }
        head(
            &x.narrow(1, t - 1, 1)?.squeeze(1)?,
            &self.wte,
            self.num.compute,
        )
    }
}

/// One block on the residual stream `x` (B, T, d) fp32: the attention branch, scaled, then the
/// MLP branch, each on the pre-normed stream (docs/model.md, "One block").
fn block(
    x: &Tensor,
    w: &BlockWeights,
    cache: &mut KvCache,
    at: At,
    num: Numerics,
) -> Result<Tensor> {
    let a = attention(&norm(x)?, w, cache, at, num)?;
    let a = linear(&a, &w.attn_proj, num.compute)?.to_dtype(DType::F32)?;
    let x = (x + a.affine(num.attn_branch_scale, 0.0)?)?;
    Ok((&x + mlp(&norm(&x)?, w, num.compute)?)?)
}

/// The token embeddings (B, T, d), fp32: the residual stream stays fp32 (docs/model.md).
fn embed(wte: &Tensor, ids: &Tensor, d: usize) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    Ok(wte.embedding(&ids.flatten_all()?)?.reshape((b, t, d))?)
}

/// Pre-norm: weightless RMSNorm in fp32.
fn norm(x: &Tensor) -> Result<Tensor> {
    rms_norm(x)
}

/// q, k, v (B, H, T, hd) in the compute dtype from the packed `c_attn` (rows q, k, v).
fn qkv(xn: &Tensor, w: &Tensor, n_head: usize, compute: DType) -> Result<[Tensor; 3]> {
    let (b, t, d) = xn.dims3()?;
    let packed = linear(xn, w, compute)?;
    let head = |i: usize| -> Result<Tensor> {
        Ok(packed
            .narrow(2, i * d, d)?
            .reshape((b, t, n_head, d / n_head))?
            .transpose(1, 2)?)
    };
    Ok([head(0)?, head(1)?, head(2)?])
}

/// Rotary embedding of (B, H, T, hd) at the new tokens' positions (the cache's offset onwards).
/// fp32 out.
fn rotary_at(x: &Tensor, at: At) -> Result<Tensor> {
    apply_rotary(x, at.cos, at.sin)
}

/// Causal self-attention of the new positions over the cached ones and themselves, up to but not
/// including the output projection: the merged heads (B, T, d).
fn attention(
    xn: &Tensor,
    w: &BlockWeights,
    cache: &mut KvCache,
    at: At,
    num: Numerics,
) -> Result<Tensor> {
    let (b, t, d) = xn.dims3()?;
    let [q, k, v] = qkv(xn, &w.c_attn, num.n_head, num.compute)?;
    // As in training: the softmax scale folded into q while it is fp32, then the compute dtype.
    let q = rotary_at(&q, at)?.affine(num.softmax_scale, 0.0)?;
    let q = q.to_dtype(num.compute)?.contiguous()?;
    let k = rotary_at(&k, at)?.to_dtype(num.compute)?.contiguous()?;
    let (k, v) = cache.append(&k, &v.contiguous()?)?;
    let y = composite(&q, &k, &v, at.mask)?;
    Ok(y.transpose(1, 2)?.contiguous()?.reshape((b, t, d))?)
}

/// The additive mask (t, pos + t) of `t` queries at positions pos.. over keys 0..pos+t: query i
/// sees keys up to pos + i.
fn mask_at(t: usize, pos: usize, device: &Device) -> Result<Tensor> {
    let keys = pos + t;
    let m: Vec<f32> = (0..t)
        .flat_map(|i| (0..keys).map(move |j| if j <= pos + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(m, (t, keys), device)?)
}

/// The MLP branch: exact-erf GELU, back to fp32 for the residual add.
fn mlp(xn: &Tensor, w: &BlockWeights, compute: DType) -> Result<Tensor> {
    let h = linear(xn, &w.c_fc, compute)?.gelu_erf()?;
    Ok(linear(&h, &w.mlp_proj, compute)?.to_dtype(DType::F32)?)
}

/// The tied head on the last position's residual (B, d): final norm, then logits (B, vocab) fp32.
fn head(x: &Tensor, wte: &Tensor, compute: DType) -> Result<Tensor> {
    Ok(linear(&norm(x)?, wte, compute)?.to_dtype(DType::F32)?)
}

/// The logits (B, vocab) of the last position of `ids` (B, T) by the training forward on
/// detached weights: the reference the cached forward is checked against, and the forward of
/// generation without a cache.
pub fn last_logits(model: &Gpt, ids: &Tensor, compute: DType) -> Result<Tensor> {
    let (h, w) = model.hidden(ids, compute, None, true)?;
    let t = h.dim(1)?;
    Ok(linear(&h.narrow(1, t - 1, 1)?.squeeze(1)?, &w, compute)?.to_dtype(DType::F32)?)
}
