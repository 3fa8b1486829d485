//! The forward pass (docs/model.md), shared by `loss`, `logits` and `eval_loss`.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};

use std::sync::Arc;

use super::arch::{Activation, Reduction, Residual};
use super::attention;
use super::blocks;
use super::head::Head;
use super::layers::{
    apply_rotary, causal_mask, linear_b, norm, rotary_freqs, rotary_tables_of, softcap,
};
use super::mlp_block;
use super::params::{BlockNames, Lin};
use super::rows::Rope;
use super::{Gpt, LayerInputSink};
use candle_nn::kv_cache::KvCache;

/// Per-sequence-length constants: rotary cos/sin (T, head_dim/2) and the additive causal mask (T, T),
/// all fp32 on the model's device. Built once per T and cached in the model.
#[derive(Clone)]
pub(crate) struct Tables {
    cos: Tensor,
    sin: Tensor,
    mask: Tensor,
    /// The same cos/sin on the host, for the fused CPU blocks.
    rope: Option<Arc<Rope>>,
}

/// Where the tokens of a forward sit: the rotary tables of their positions (T, hd/2) and the
/// additive mask (T, keys) of their queries over the keys attention sees (a training forward's
/// own T, or the KV cache's positions and theirs).
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    pub mask: &'a Tensor,
}

impl Tables {
    fn at(&self) -> At<'_> {
        At {
            cos: &self.cos,
            sin: &self.sin,
            mask: &self.mask,
        }
    }

    /// The tables of every position 0..T: the decoder narrows them to the positions it feeds.
    pub(crate) fn cos_sin(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }
}

/// Hand `x` (any shape (.., in)) to the sink flattened to (N, in), detached, fp32. Does nothing
/// (and computes nothing) when there is no sink.
fn record(sink: &mut Option<&mut dyn LayerInputSink>, name: &str, x: &Tensor) -> Result<()> {
    if let Some(s) = sink.as_mut() {
        let in_f = x.dim(D::Minus1)?;
        let n = x.elem_count() / in_f;
        let flat = x.detach().to_dtype(DType::F32)?.reshape((n, in_f))?;
        s.record(name, &flat)?;
    }
    Ok(())
}

impl Gpt {
    pub(crate) fn tables(&self, t: usize) -> Result<Tables> {
        let mut cache = self
            .tables
            .lock()
            .map_err(|_| anyhow::anyhow!("model table cache poisoned"))?;
        if let Some(tab) = cache.get(&t) {
            return Ok(tab.clone());
        }
        let c = &self.cfg;
        let freqs = rotary_freqs(c.head_dim(), c.rope_base, c.rotary);
        let (cos, sin) = rotary_tables_of(t, &freqs, &self.device)?;
        let rope = if self.device.is_cpu() {
            Some(Arc::new(Rope {
                cos: cos.flatten_all()?.to_vec1::<f32>()?,
                sin: sin.flatten_all()?.to_vec1::<f32>()?,
            }))
        } else {
            None
        };
        let tab = Tables {
            cos,
            sin,
            mask: causal_mask(t, &self.device)?,
            rope,
        };
        cache.insert(t, tab.clone());
        Ok(tab)
    }

    /// A parameter as a tensor: tracked (part of the autograd graph) or detached (no graph).
    fn weight(&self, name: &str, detached: bool) -> Result<Tensor> {
        let v = self
            .vars
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("model has no parameter {name}"))?;
        Ok(if detached {
            v.as_detached_tensor()
        } else {
            v.as_tensor().clone()
        })
    }

    /// An optional parameter as a tensor ([`Gpt::weight`]).
    fn weight_opt(&self, name: Option<&str>, detached: bool) -> Result<Option<Tensor>> {
        name.map(|n| self.weight(n, detached)).transpose()
    }

    /// A Linear's weight and bias.
    fn lin(&self, l: &Lin, detached: bool) -> Result<(Tensor, Option<Tensor>)> {
        Ok((
            self.weight(&l.w, detached)?,
            self.weight_opt(l.b.as_deref(), detached)?,
        ))
    }

    /// `x · Wᵀ + b` for Linear `l`, in `compute`.
    fn apply(&self, x: &Tensor, l: &Lin, compute: DType, detached: bool) -> Result<Tensor> {
        let (w, b) = self.lin(l, detached)?;
        linear_b(x, &w, b.as_ref(), compute)
    }

    /// RMSNorm with the gains named `gains` (weightless when None), in fp32, cast to the
    /// residual stream's dtype `dtype` (Track 3's `F.rms_norm` returns its input's dtype).
    fn norm(
        &self,
        x: &Tensor,
        gains: Option<&str>,
        dtype: DType,
        detached: bool,
    ) -> Result<Tensor> {
        let g = self.weight_opt(gains, detached)?;
        Ok(norm(x, g.as_ref(), self.cfg.norm_eps)?.to_dtype(dtype)?)
    }

    /// The head: its weight (the embedding when tied), bias, softcap and reduction.
    pub(crate) fn head(&self, detached: bool) -> Result<Head> {
        Ok(Head {
            w: self.weight(self.names.head_weight(), detached)?,
            b: self.weight_opt(self.names.head_bias(), detached)?,
            softcap: self.cfg.softcap,
            sum: self.cfg.loss == Reduction::Sum,
        })
    }

    /// Reject inputs the model cannot run: an unsupported compute dtype, `idx` not (B, T) of an
    /// integer type, or T outside 1..=seq_len. Returns (B, T).
    fn check_input(&self, idx: &Tensor, compute: DType) -> Result<(usize, usize)> {
        if !matches!(compute, DType::F32 | DType::BF16 | DType::F16) {
            bail!("model: compute dtype {compute:?} not supported (expected f32, bf16 or f16)");
        }
        let (b, t) = match idx.dims() {
            &[b, t] => (b, t),
            d => bail!("model: idx must be (B, T), got shape {d:?}"),
        };
        if t == 0 || t > self.cfg.seq_len {
            bail!(
                "model: sequence length {t} outside 1..={} (config seq_len)",
                self.cfg.seq_len
            );
        }
        if !matches!(idx.dtype(), DType::U32 | DType::I64 | DType::U8) {
            bail!(
                "model: idx dtype {:?} is not an integer type (expected u32)",
                idx.dtype()
            );
        }
        Ok((b, t))
    }

    /// Logits (B, T, vocab) fp32, after the softcap when the model has one. With `detached` every
    /// weight is detached, so no graph is built.
    pub(crate) fn forward(
        &self,
        idx: &Tensor,
        compute: DType,
        sink: Option<&mut dyn LayerInputSink>,
        detached: bool,
    ) -> Result<Tensor> {
        let h = self.hidden(idx, compute, sink, detached)?;
        // Logits come back in fp32 (docs/model.md, "Head").
        self.head_logits(&h, compute, detached)
    }

    /// The final normed hidden states (B, T, d), fp32 (or the compute dtype where the residual
    /// stream is kept in it).
    pub(crate) fn hidden(
        &self,
        idx: &Tensor,
        compute: DType,
        mut sink: Option<&mut dyn LayerInputSink>,
        detached: bool,
    ) -> Result<Tensor> {
        let (_, t) = self.check_input(idx, compute)?;
        let tab = self.tables(t)?;
        let c = &self.cfg;
        // Record 4 keeps the stream fp32 (as under autocast, where the embedding output is not
        // cast); Track 3 keeps its embedding, hence every activation, in the compute dtype.
        let stream = self.stream_dtype(compute);
        let mut x = self.embed(idx, stream, detached)?;
        // The fused CPU sub-blocks (blocks.rs) where they apply; they do not hand layer inputs
        // to a sink, so Newton-Muon's statistics steps take the primitive path.
        let fused = match (&tab.rope, &sink) {
            (Some(rope), None) if compute == DType::F32 && self.fused_blocks => Some(rope),
            _ => None,
        };
        for names in &self.names.blocks {
            if let Some(rope) = fused.filter(|_| blocks::supports(c)) {
                x = self.fused_block(&x, names, rope, detached)?;
                continue;
            }
            let dtypes = (compute, stream);
            x = self.block(&x, names, tab.at(), dtypes, &mut sink, detached, None)?;
        }
        self.norm(&x, self.names.final_norm.as_deref(), stream, detached)
    }

    /// The residual stream's dtype: fp32 (record 4, as under autocast, where the embedding's
    /// output is not cast), or the compute dtype (Track 3 keeps its embedding in it).
    pub(crate) fn stream_dtype(&self, compute: DType) -> DType {
        match self.cfg.residual {
            Residual::Fp32 => DType::F32,
            Residual::Compute => compute,
        }
    }

    /// The token embeddings of `idx` (B, T) as the residual stream (B, T, d) in `stream`, normed
    /// when the model has an embedding norm.
    pub(crate) fn embed(&self, idx: &Tensor, stream: DType, detached: bool) -> Result<Tensor> {
        let (b, t) = idx.dims2()?;
        let wte = self.weight(&self.names.embed, detached)?;
        let x = wte
            .embedding(&idx.flatten_all()?)?
            .reshape((b, t, self.cfg.n_embd))?
            .to_dtype(stream)?;
        if self.cfg.embed_norm {
            return self.norm(&x, self.names.embed_norm.as_deref(), stream, detached);
        }
        Ok(x)
    }

    /// The final norm and the head on hidden states `x` (.., d): logits in fp32, after the
    /// softcap when the model has one.
    pub(crate) fn logits_of(&self, x: &Tensor, compute: DType, detached: bool) -> Result<Tensor> {
        let stream = self.stream_dtype(compute);
        let h = self.norm(x, self.names.final_norm.as_deref(), stream, detached)?;
        self.head_logits(&h, compute, detached)
    }

    /// The head on hidden states `h` already through the final norm, on detached weights.
    pub(crate) fn head_of_normed(&self, h: &Tensor, compute: DType) -> Result<Tensor> {
        self.head_logits(h, compute, true)
    }

    /// The head on normed hidden states `h`: logits in fp32, softcapped when the model is.
    fn head_logits(&self, h: &Tensor, compute: DType, detached: bool) -> Result<Tensor> {
        let head = self.head(detached)?;
        let z = linear_b(h, &head.w, head.b.as_ref(), compute)?.to_dtype(DType::F32)?;
        if head.softcap > 0.0 {
            return softcap(&z, head.softcap);
        }
        Ok(z)
    }

    /// One block on the primitive path (docs/model.md, "One block"), handing its Linears'
    /// inputs to `sink`; with a KV `cache`, its keys and values are appended there and the
    /// queries attend to every cached position (generation, `decoder.rs`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block(
        &self,
        x: &Tensor,
        names: &BlockNames,
        at: At,
        (compute, stream): (DType, DType),
        sink: &mut Option<&mut dyn LayerInputSink>,
        detached: bool,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let xn = self.norm(x, names.norm1.as_deref(), stream, detached)?;
        record(sink, names.attn_input(), &xn)?;
        let y = self.attention(&xn, names, at, (compute, detached), cache)?;
        record(sink, &names.attn_proj.w, &y)?;
        let a = self
            .apply(&y, &names.attn_proj, compute, detached)?
            .to_dtype(stream)?;
        // Record 4 scales only the attention branch, by 1/√(2·n_layer) ("Residual stream").
        let a = if c.scale_attn_branch {
            a.affine(1.0 / (2.0 * c.n_layer as f64).sqrt(), 0.0)?
        } else {
            a
        };
        let x = (x + a)?;
        let xn = self.norm(&x, names.norm2.as_deref(), stream, detached)?;
        record(sink, &names.fc.w, &xn)?;
        let h = self.apply(&xn, &names.fc, compute, detached)?;
        let h = match c.mlp {
            Activation::Gelu => h.gelu_erf()?,
            Activation::Relu2 => h.relu()?.sqr()?,
        };
        record(sink, &names.mlp_proj.w, &h)?;
        let m = self.apply(&h, &names.mlp_proj, compute, detached)?;
        Ok((x + m.to_dtype(stream)?)?)
    }

    /// Causal self-attention of one block on the normed input `xn` (B, T, d), up to but not
    /// including the output projection: returns the merged heads (B, T, d) in `compute`.
    fn attention(
        &self,
        xn: &Tensor,
        names: &BlockNames,
        at: At,
        (compute, detached): (DType, bool),
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, t, d) = xn.dims3()?;
        let (nh, hd) = (self.cfg.n_head, self.cfg.head_dim());
        // q, k, v as (B, H, T, hd): thirds of the packed projection, or three projections.
        let qkv: Vec<Tensor> = if names.qkv.len() == 1 {
            let packed = self.apply(xn, &names.qkv[0], compute, detached)?;
            (0..3)
                .map(|i| packed.narrow(2, i * d, d))
                .collect::<candle_core::Result<_>>()?
        } else {
            names
                .qkv
                .iter()
                .map(|l| self.apply(xn, l, compute, detached))
                .collect::<Result<_>>()?
        };
        let heads =
            |x: &Tensor| -> Result<Tensor> { Ok(x.reshape((b, t, nh, hd))?.transpose(1, 2)?) };
        let (mut q, mut k) = (heads(&qkv[0])?, heads(&qkv[1])?);
        if self.cfg.qk_norm {
            // A weightless RMSNorm per head, before rotary (Track 3, train_gpt_simple.py:107),
            // with F.rms_norm's default epsilon, as the model's other norms.
            q = norm(&q, None, self.cfg.norm_eps)?.to_dtype(compute)?;
            k = norm(&k, None, self.cfg.norm_eps)?.to_dtype(compute)?;
        }
        // The softmax scale is folded into q while it is still fp32: the same product as scaling
        // the (T×T) scores, at head_dim/T of the cost.
        let q = apply_rotary(&q, at.cos, at.sin)?.affine(self.cfg.softmax_scale(), 0.0)?;
        let q = q.to_dtype(compute)?.contiguous()?;
        let k = apply_rotary(&k, at.cos, at.sin)?
            .to_dtype(compute)?
            .contiguous()?;
        let v = heads(&qkv[2])?.contiguous()?;
        let y = match cache {
            // New queries over the cached keys and their own (a rectangular mask).
            Some(cache) => {
                let (k, v) = cache.append(&k, &v)?;
                attention::composite(&q, &k, &v, at.mask)?
            }
            // Fused and tiled for fp32 on the CPU, primitives elsewhere (attention.rs).
            None => attention::causal_attention(&q, &k, &v, at.mask)?,
        }; // (B, H, T, hd)
        Ok(y.transpose(1, 2)?.contiguous()?.reshape((b, t, d))?)
    }

    /// One block through the fused CPU sub-blocks (`blocks.rs`, `mlp_block.rs`), their
    /// parameters handed over as flat `[gains | W | b]` sides (record 4's: its two weights).
    fn fused_block(
        &self,
        x: &Tensor,
        names: &BlockNames,
        rope: &Arc<Rope>,
        detached: bool,
    ) -> Result<Tensor> {
        let arch = blocks::BlockArch::of(&self.cfg);
        let attn_in = self.side(names.norm1.as_deref(), &names.qkv, detached)?;
        let attn_out = self.side(None, std::slice::from_ref(&names.attn_proj), detached)?;
        let x = blocks::attention_block(x, &attn_in, &attn_out, arch, rope)?;
        let mlp_in = self.side(
            names.norm2.as_deref(),
            std::slice::from_ref(&names.fc),
            detached,
        )?;
        let mlp_out = self.side(None, std::slice::from_ref(&names.mlp_proj), detached)?;
        mlp_block::mlp_block(&x, &mlp_in, &mlp_out, arch, 4 * self.cfg.n_embd)
    }

    /// One side of a fused sub-block: `[gains | W₁ | W₂ … | b₁ | b₂ …]` flattened, or the one
    /// weight as it is where there are no gains and biases (record 4).
    fn side(&self, gains: Option<&str>, lins: &[Lin], detached: bool) -> Result<Tensor> {
        if gains.is_none() && lins.len() == 1 && lins[0].b.is_none() {
            return self.weight(&lins[0].w, detached);
        }
        let mut parts = Vec::new();
        if let Some(g) = gains {
            parts.push(self.weight(g, detached)?);
        }
        for l in lins {
            parts.push(self.weight(&l.w, detached)?.flatten_all()?);
        }
        for l in lins {
            if let Some(b) = &l.b {
                parts.push(self.weight(b, detached)?);
            }
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}
