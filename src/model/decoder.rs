//! The cached forward of generation (docs/model.md, "Generation"): a [`Decoder`] keeps every
//! block's rotated keys and its values (a KV cache, candle_nn's `KvCache`), so that each new
//! token costs one forward of one token: its query attends to the cached keys, and its own
//! rotary angle continues from the number of positions already cached.
//!
//! It is the training forward's own primitive path (`forward.rs`: the embedding, each block
//! with a cache handed to its attention, the final norm and head) on detached weights, so every
//! architecture the model has (record 4's, Track 3's) decodes, on any device and compute dtype.
//! [`last_logits`] is the training forward's answer to the same question, the reference the
//! tests hold it to (`src/model/tests/generate.rs`).

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::kv_cache::KvCache;

use super::forward::At;
use super::Gpt;

/// A KV cache per block over `model`'s current weights (shared, not copied; no graph is built),
/// for decoding one sequence batch at a time.
pub struct Decoder<'a> {
    model: &'a Gpt,
    compute: DType,
    /// Rotary cos/sin for positions 0..seq_len, (seq_len, head_dim/2) fp32.
    cos: Tensor,
    sin: Tensor,
    caches: Vec<KvCache>,
}

impl Gpt {
    /// A decoder over the current weights, computing the Linears in `compute` as the training
    /// forward does.
    pub fn decoder(&self, compute: DType) -> Result<Decoder<'_>> {
        let tab = self.tables(self.cfg.seq_len)?;
        let (cos, sin) = tab.cos_sin();
        Ok(Decoder {
            model: self,
            compute,
            cos: cos.clone(),
            sin: sin.clone(),
            // Keys and values are (B, H, T, hd): the sequence is dimension 2.
            caches: (0..self.cfg.n_layer)
                .map(|_| KvCache::new(2, self.cfg.seq_len))
                .collect(),
        })
    }
}

impl Decoder<'_> {
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
        let model = self.model;
        let (_, t) = ids.dims2()?;
        let pos = self.len();
        if t == 0 || pos + t > model.cfg.seq_len {
            bail!(
                "decoder: {t} new tokens after {pos} cached do not fit the context of {}",
                model.cfg.seq_len
            );
        }
        let (cos, sin) = (self.cos.narrow(0, pos, t)?, self.sin.narrow(0, pos, t)?);
        let mask = mask_at(t, pos, ids.device())?;
        let at = At {
            cos: &cos,
            sin: &sin,
            mask: &mask,
        };
        let dtypes = (self.compute, model.stream_dtype(self.compute));
        let mut x = model.embed(ids, dtypes.1, true)?;
        for (names, cache) in model.names.blocks.iter().zip(self.caches.iter_mut()) {
            x = model.block(&x, names, at, dtypes, &mut None, true, Some(cache))?;
        }
        model.logits_of(&x.narrow(1, t - 1, 1)?.squeeze(1)?, self.compute, true)
    }
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

/// The logits (B, vocab) of the last position of `ids` (B, T) by the training forward on
/// detached weights: the reference the cached forward is checked against, and the forward of
/// generation without a cache.
pub fn last_logits(model: &Gpt, ids: &Tensor, compute: DType) -> Result<Tensor> {
    let h = model.hidden(ids, compute, None, true)?;
    let t = h.dim(1)?;
    let last = h.narrow(1, t - 1, 1)?.squeeze(1)?;
    model.head_of_normed(&last, compute)
}
