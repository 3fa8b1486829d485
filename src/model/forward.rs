//! The forward pass (docs/model.md), shared by `loss`, `logits` and `eval_loss`.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};

use std::sync::Arc;

use super::attention;
use super::blocks;
use super::layers::{apply_rotary, causal_mask, linear, rms_norm, rotary_tables};
use super::params::{BlockNames, WTE};
use super::rows::Rope;
use super::{Gpt, LayerInputSink};

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
    fn tables(&self, t: usize) -> Result<Tables> {
        let mut cache = self
            .tables
            .lock()
            .map_err(|_| anyhow::anyhow!("model table cache poisoned"))?;
        if let Some(tab) = cache.get(&t) {
            return Ok(tab.clone());
        }
        let hd = self.cfg.n_embd / self.cfg.n_head;
        let (cos, sin) = rotary_tables(t, hd, self.cfg.rope_base, &self.device)?;
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

    /// Logits (B, T, vocab) fp32. With `detached` every weight is detached, so no graph is built.
    pub(crate) fn forward(
        &self,
        idx: &Tensor,
        compute: DType,
        sink: Option<&mut dyn LayerInputSink>,
        detached: bool,
    ) -> Result<Tensor> {
        let (xn, wte) = self.hidden(idx, compute, sink, detached)?;
        // The tied head; logits come back in fp32 (docs/model.md, "Head").
        Ok(linear(&xn, &wte, compute)?.to_dtype(DType::F32)?)
    }

    /// The final normed hidden states (B, T, d) fp32 and the tied weight they meet in the head.
    pub(crate) fn hidden(
        &self,
        idx: &Tensor,
        compute: DType,
        mut sink: Option<&mut dyn LayerInputSink>,
        detached: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (b, t) = self.check_input(idx, compute)?;
        let tab = self.tables(t)?;
        // Only the attention branch is scaled, by 1/√(2·n_layer) (docs/model.md, "Residual stream").
        let attn_scale = 1.0 / (2.0 * self.cfg.n_layer as f64).sqrt();

        let wte = self.weight(WTE, detached)?;
        // The residual stream stays fp32, as under PyTorch autocast (embedding is not autocast).
        let mut x = wte
            .embedding(&idx.flatten_all()?)?
            .reshape((b, t, self.cfg.n_embd))?;

        // The fused CPU sub-blocks (blocks.rs) where they apply; they do not hand layer inputs
        // to a sink, so Newton-Muon's statistics steps take the primitive path.
        let fused = match (&tab.rope, &sink) {
            (Some(rope), None) if compute == DType::F32 && self.fused_blocks => Some(rope),
            _ => None,
        };
        for names in &self.block_names {
            let w = |name: &str| self.weight(name, detached);
            if let Some(rope) = fused {
                let (wa, wp) = (w(&names.c_attn)?, w(&names.attn_proj)?);
                x = blocks::attention_block(&x, &wa, &wp, self.cfg.n_head, attn_scale, rope)?;
                x = blocks::mlp_block(&x, &w(&names.c_fc)?, &w(&names.mlp_proj)?)?;
                continue;
            }
            let xn = rms_norm(&x)?;
            record(&mut sink, &names.c_attn, &xn)?;
            let y = self.attention(&xn, names, &tab, compute, detached)?;
            record(&mut sink, &names.attn_proj, &y)?;
            let a = linear(&y, &w(&names.attn_proj)?, compute)?;
            x = (x + a.to_dtype(DType::F32)?.affine(attn_scale, 0.0)?)?;

            // MLP branch: exact erf GELU.
            let xn = rms_norm(&x)?;
            record(&mut sink, &names.c_fc, &xn)?;
            let h = linear(&xn, &w(&names.c_fc)?, compute)?.gelu_erf()?;
            record(&mut sink, &names.mlp_proj, &h)?;
            let m = linear(&h, &w(&names.mlp_proj)?, compute)?;
            x = (x + m.to_dtype(DType::F32)?)?;
        }

        Ok((rms_norm(&x)?, wte))
    }

    /// Causal self-attention of one block on the normed input `xn` (B, T, d), up to but not
    /// including the output projection: returns the merged heads (B, T, d) in `compute`.
    fn attention(
        &self,
        xn: &Tensor,
        names: &BlockNames,
        tab: &Tables,
        compute: DType,
        detached: bool,
    ) -> Result<Tensor> {
        let (b, t, d) = xn.dims3()?;
        let nh = self.cfg.n_head;
        let hd = d / nh;
        let qkv = linear(xn, &self.weight(&names.c_attn, detached)?, compute)?;
        let heads = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(2, i * d, d)?
                .reshape((b, t, nh, hd))?
                .transpose(1, 2)?)
        };
        // The softmax scale 1/√head_dim is folded into q while it is still fp32: the same
        // product as scaling the (T×T) scores, at head_dim/T of the cost.
        let softmax_scale = 1.0 / (hd as f64).sqrt();
        let q = apply_rotary(&heads(0)?, &tab.cos, &tab.sin)?.affine(softmax_scale, 0.0)?;
        let q = q.to_dtype(compute)?.contiguous()?;
        let k = apply_rotary(&heads(1)?, &tab.cos, &tab.sin)?
            .to_dtype(compute)?
            .contiguous()?;
        let v = heads(2)?.contiguous()?;
        // Fused and tiled for fp32 on the CPU, primitives elsewhere (attention.rs).
        let y = attention::causal_attention(&q, &k, &v, &tab.mask)?; // (B, H, T, hd)
        Ok(y.transpose(1, 2)?.contiguous()?.reshape((b, t, d))?)
    }
}
