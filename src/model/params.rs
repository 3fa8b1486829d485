//! Parameter names, shapes and the seeded initialisation, for every architecture of
//! [`GptConfig`] (docs/model.md, "Parameter names" and "Initialisation"; docs/track3.md).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::arch::{Init, Names};
use super::GptConfig;

/// Name of record 4's tied embedding/head matrix (PyTorch also saves it as [`LM_HEAD_ALIAS`]).
pub const WTE: &str = "transformer.wte.weight";
/// PyTorch's second name for record 4's tied matrix, accepted on load.
pub const LM_HEAD_ALIAS: &str = "lm_head.weight";

/// A Linear's weight (out, in) and, when the model has biases, its bias (out).
#[derive(Debug, Clone)]
pub struct Lin {
    pub w: String,
    pub b: Option<String>,
}

impl Lin {
    fn new(w: String, bias: bool) -> Self {
        let b = bias.then(|| w.replace(".weight", ".bias"));
        Lin { w, b }
    }
}

/// The parameters of block `i`.
#[derive(Debug, Clone)]
pub struct BlockNames {
    /// [q; k; v] packed in one (3·d, d) Linear (record 4), or q, k and v apart (Track 3).
    pub qkv: Vec<Lin>,
    pub attn_proj: Lin,
    pub fc: Lin,
    pub mlp_proj: Lin,
    /// The gains of the norms before the attention and the MLP (None: weightless).
    pub norm1: Option<String>,
    pub norm2: Option<String>,
}

impl BlockNames {
    /// The name under which the attention input is handed to a layer-input sink: the packed
    /// c_attn, or q (whose input k and v share).
    pub fn attn_input(&self) -> &str {
        &self.qkv[0].w
    }
}

/// Every parameter's name, by role.
#[derive(Debug, Clone)]
pub struct ParamNames {
    /// The token embedding (also the head when tied).
    pub embed: String,
    /// The untied head (None when tied).
    pub head: Option<Lin>,
    /// The head's bias when the head is tied and the model has biases.
    pub tied_head_bias: Option<String>,
    pub embed_norm: Option<String>,
    pub final_norm: Option<String>,
    pub blocks: Vec<BlockNames>,
}

impl ParamNames {
    pub fn new(c: &GptConfig) -> Self {
        let gains = |s: String| c.norm_gains.then_some(s);
        match c.names {
            Names::Record4 => ParamNames {
                embed: WTE.to_string(),
                head: (!c.tied_head).then(|| Lin::new(LM_HEAD_ALIAS.to_string(), c.bias)),
                tied_head_bias: (c.tied_head && c.bias).then(|| "lm_head.bias".to_string()),
                embed_norm: c
                    .embed_norm
                    .then(|| "transformer.ln_e.weight".to_string())
                    .and_then(gains),
                final_norm: gains("transformer.ln_f.weight".to_string()),
                blocks: (0..c.n_layer)
                    .map(|i| {
                        let p = format!("transformer.h.{i}");
                        BlockNames {
                            qkv: vec![Lin::new(format!("{p}.attn.c_attn.weight"), c.bias)],
                            attn_proj: Lin::new(format!("{p}.attn.c_proj.weight"), c.bias),
                            fc: Lin::new(format!("{p}.mlp.c_fc.weight"), c.bias),
                            mlp_proj: Lin::new(format!("{p}.mlp.c_proj.weight"), c.bias),
                            norm1: gains(format!("{p}.ln_1.weight")),
                            norm2: gains(format!("{p}.ln_2.weight")),
                        }
                    })
                    .collect(),
            },
            Names::Track3 => ParamNames {
                embed: "embed.weight".to_string(),
                head: (!c.tied_head).then(|| Lin::new("proj.weight".to_string(), c.bias)),
                tied_head_bias: (c.tied_head && c.bias).then(|| "proj.bias".to_string()),
                embed_norm: c
                    .embed_norm
                    .then(|| "norm1.gains".to_string())
                    .and_then(gains),
                final_norm: gains("norm2.gains".to_string()),
                blocks: (0..c.n_layer)
                    .map(|i| {
                        let p = format!("blocks.{i}");
                        let lin = |s: &str| Lin::new(format!("{p}.{s}.weight"), c.bias);
                        BlockNames {
                            qkv: vec![lin("attn.q"), lin("attn.k"), lin("attn.v")],
                            attn_proj: lin("attn.proj"),
                            fc: lin("mlp.fc"),
                            mlp_proj: lin("mlp.proj"),
                            norm1: gains(format!("{p}.norm1.gains")),
                            norm2: gains(format!("{p}.norm2.gains")),
                        }
                    })
                    .collect(),
            },
        }
    }

    /// The head's weight: the untied head's, or the embedding.
    pub fn head_weight(&self) -> &str {
        self.head.as_ref().map_or(&self.embed, |h| &h.w)
    }

    /// The head's bias, if any.
    pub fn head_bias(&self) -> Option<&str> {
        match &self.head {
            Some(h) => h.b.as_deref(),
            None => self.tied_head_bias.as_deref(),
        }
    }
}

impl GptConfig {
    /// Reject shapes the model cannot build (zero sizes, a head width that does not divide the
    /// model width, an odd head width that rotary cannot pair, a bad rotary base, epsilon, scale
    /// or softcap). Errors name the field.
    pub fn validate(&self) -> Result<()> {
        let c = self;
        if c.vocab_size == 0 || c.n_layer == 0 || c.n_head == 0 || c.n_embd == 0 || c.seq_len == 0 {
            bail!(
                "model config: vocab_size, n_layer, n_head, n_embd and seq_len must all be > 0 (got {}, {}, {}, {}, {})",
                c.vocab_size, c.n_layer, c.n_head, c.n_embd, c.seq_len
            );
        }
        if c.head_dim == 0 && !c.n_embd.is_multiple_of(c.n_head) {
            bail!(
                "model config: n_embd {} is not divisible by n_head {}",
                c.n_embd,
                c.n_head
            );
        }
        if c.head_dim != 0 && c.head_dim * c.n_head != c.n_embd {
            bail!(
                "model config: model.head_dim = {} does not divide the width: n_head {} × head_dim {} must be n_embd {}",
                c.head_dim, c.n_head, c.head_dim, c.n_embd
            );
        }
        let hd = c.head_dim();
        if !hd.is_multiple_of(2)
            || (c.rotary == super::arch::Rotary::HalfTruncated && !hd.is_multiple_of(4))
        {
            bail!("model config: head_dim {hd} must be even for rotary (a multiple of 4 for model.rotary = \"half-truncated\")");
        }
        for (field, v, ok) in [
            ("rope_base", c.rope_base, c.rope_base > 0.0),
            ("norm_eps", c.norm_eps, c.norm_eps > 0.0),
            ("attn_scale", c.attn_scale, c.attn_scale >= 0.0),
            ("softcap", c.softcap, c.softcap >= 0.0),
        ] {
            if !v.is_finite() || !ok {
                bail!("model config: model.{field} = {v} is out of range");
            }
        }
        Ok(())
    }

    /// Every parameter's name and shape, in sorted name order (the order init draws in).
    /// Weights are (out_features, in_features) as in torch.nn.Linear; the embedding is
    /// (vocab, d); biases and gains are 1-D.
    pub fn param_shapes(&self) -> BTreeMap<String, Vec<usize>> {
        let (d, v) = (self.n_embd, self.vocab_size);
        let names = ParamNames::new(self);
        let mut m = BTreeMap::new();
        let mut lin = |l: &Lin, out: usize, inp: usize| {
            m.insert(l.w.clone(), vec![out, inp]);
            if let Some(b) = &l.b {
                m.insert(b.clone(), vec![out]);
            }
        };
        for b in &names.blocks {
            let per = if b.qkv.len() == 1 { 3 * d } else { d };
            for q in &b.qkv {
                lin(q, per, d);
            }
            lin(&b.attn_proj, d, d);
            lin(&b.fc, 4 * d, d);
            lin(&b.mlp_proj, d, 4 * d);
        }
        if let Some(h) = &names.head {
            lin(h, v, d);
        }
        m.insert(names.embed.clone(), vec![v, d]);
        if let Some(b) = &names.tied_head_bias {
            m.insert(b.clone(), vec![v]);
        }
        let gains = names.blocks.iter().flat_map(|b| [&b.norm1, &b.norm2]);
        for g in gains
            .chain([&names.embed_norm, &names.final_norm])
            .flatten()
        {
            m.insert(g.clone(), vec![d]);
        }
        m
    }
}

/// Fresh weights by `cfg.init`, drawn from one `StdRng::seed_from_u64(seed)` on the host in
/// sorted name order, so a seed gives the same weights on every device.
pub fn init_vars(cfg: &GptConfig, device: &Device, seed: u64) -> Result<BTreeMap<String, Var>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let names = ParamNames::new(cfg);
    let shapes = cfg.param_shapes();
    let mut vars = BTreeMap::new();
    for (name, shape) in &shapes {
        let p = Param {
            name,
            shape,
            kind: kind_of(name, shape, &names),
            fan_in: fan_in(name, shape, &shapes, &names),
        };
        let data = draw(cfg.init, &p, &mut rng)?;
        let t = Tensor::from_vec(data, shape.as_slice(), device)?;
        vars.insert(name.clone(), Var::from_tensor(&t)?);
    }
    Ok(vars)
}

/// What one parameter is: the init rules name parameters by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The token embedding of a tied model (initialised as the head).
    TiedEmbedding,
    Embedding,
    Weight,
    Bias,
    Gains,
}

struct Param<'a> {
    name: &'a str,
    shape: &'a [usize],
    kind: Kind,
    /// in_features of the Linear the parameter belongs to.
    fan_in: usize,
}

fn kind_of(name: &str, shape: &[usize], names: &ParamNames) -> Kind {
    if name == names.embed {
        if names.head.is_none() {
            Kind::TiedEmbedding
        } else {
            Kind::Embedding
        }
    } else if shape.len() == 2 {
        Kind::Weight
    } else if name.ends_with(".bias") {
        Kind::Bias
    } else {
        Kind::Gains
    }
}

/// in_features of the Linear that owns `name`: a weight's last dim; a bias's weight's (the
/// embedding's for the bias of a tied head).
fn fan_in(
    name: &str,
    shape: &[usize],
    shapes: &BTreeMap<String, Vec<usize>>,
    names: &ParamNames,
) -> usize {
    let owner = if Some(name) == names.tied_head_bias.as_deref() {
        names.embed.clone()
    } else {
        name.replace(".bias", ".weight")
    };
    shapes
        .get(&owner)
        .and_then(|s| s.last().copied())
        .unwrap_or_else(|| *shape.last().unwrap_or(&1))
}

/// One parameter's initial values under `init` (docs/model.md, "Initialisation";
/// docs/track3.md, "Init").
fn draw(init: Init, p: &Param, rng: &mut StdRng) -> Result<Vec<f32>> {
    let n: usize = p.shape.iter().product();
    // PyTorch's Linear: weight and bias both U(±1/√in_features).
    let uniform = |rng: &mut StdRng| -> Vec<f32> {
        let bound = 1.0 / (p.fan_in as f32).sqrt();
        (0..n).map(|_| rng.random_range(-bound..bound)).collect()
    };
    let normal = |rng: &mut StdRng, std: f32| -> Result<Vec<f32>> {
        let dist = Normal::new(0.0f32, std)?;
        Ok((0..n).map(|_| dist.sample(rng)).collect())
    };
    let proj = p.name.contains("proj");
    Ok(match (init, p.kind) {
        (_, Kind::Gains) => vec![1.0; n],
        // Record 4's tied matrix is nn.Linear(d, vocab)'s weight, U(±1/√d).
        (Init::PytorchDefault, Kind::TiedEmbedding) => uniform(rng),
        (_, Kind::TiedEmbedding | Kind::Embedding) => normal(rng, 1.0)?,
        (Init::Track3, Kind::Weight) if proj => vec![0.0; n],
        (Init::Track3, Kind::Weight) => normal(rng, (0.33f32 / p.fan_in as f32).sqrt())?,
        (Init::Track3, Kind::Bias) => vec![0.0; n],
        (Init::Track3Legacy, _) if proj => vec![0.0; n],
        (Init::PytorchDefault | Init::Track3Legacy, Kind::Weight | Kind::Bias) => uniform(rng),
    })
}
