//! Samples while training (`train.sample_every = N`): at every N-th validation, and at the last,
//! the weights continue a fixed prompt (`train.sample_prompt`) greedily for `train.sample_tokens`
//! tokens with the KV cache (src/model/generate.rs, decoder.rs). The text goes to `log.jsonl` as a `sample`
//! record and to the console. Like validation, it runs between steps, off the record-4 clock;
//! greedy decoding draws no random numbers and reads no data, so it changes nothing in the run.
//! Also the prompt encoding that `speedrun sample` shares.

use std::ops::ControlFlow;

use anyhow::{bail, Result};
use candle_core::DType;
use tokenizers::Tokenizer;

use super::config::Config;
use super::dist;
use super::log::Sample;
use super::trainer::Trainer;
use crate::data::{tokenize::load_tokenizer, EOT};
use crate::model::generate::{generate, GenerateOptions};
use crate::model::sampling::{Sampler, SamplingParams};
use crate::model::{Gpt, GptConfig};

/// The GPT-2 ids of `text`, or `<|endoftext|>` alone for an empty text (a document's start),
/// checked to fit the model: every id inside its vocabulary, no more than `seq_len` of them.
/// `what` names the input in errors (`--prompt`, `train.sample_prompt`).
pub fn encode_prompt(
    tok: &Tokenizer,
    text: &str,
    model: &GptConfig,
    what: &str,
) -> Result<Vec<u32>> {
    let ids = if text.is_empty() {
        vec![EOT]
    } else {
        let enc = tok
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("{what}: cannot encode: {e}"))?;
        enc.get_ids().to_vec()
    };
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= model.vocab_size) {
        bail!(
            "{what}: token {id} is outside the model's vocabulary of {}",
            model.vocab_size
        );
    }
    if ids.len() > model.seq_len {
        bail!(
            "{what}: {} tokens, longer than the model's context (model.seq_len = {})",
            ids.len(),
            model.seq_len
        );
    }
    Ok(ids)
}

/// The in-run sampler of a config: its tokenizer and encoded prompt.
pub struct RunSamples {
    tok: Tokenizer,
    prompt: String,
    ids: Vec<u32>,
    tokens: usize,
    /// Validations between samples.
    every: usize,
}

impl RunSamples {
    /// `None` when `train.sample_every` is 0; errors name the field.
    pub fn new(cfg: &Config) -> Result<Option<RunSamples>> {
        let t = &cfg.train;
        if t.sample_every == 0 {
            return Ok(None);
        }
        if t.sample_tokens == 0 {
            bail!("train.sample_tokens must be > 0 when train.sample_every is on");
        }
        let tok = load_tokenizer(None)?;
        let ids = encode_prompt(&tok, &t.sample_prompt, &cfg.model, "train.sample_prompt")?;
        Ok(Some(RunSamples {
            tok,
            prompt: t.sample_prompt.clone(),
            ids,
            tokens: t.sample_tokens,
            every: t.sample_every,
        }))
    }

    /// The greedy continuation of the prompt by `model`, as the record of `step`.
    pub fn sample(&self, model: &Gpt, step: usize) -> Result<Sample> {
        let mut greedy = Sampler::new(SamplingParams::GREEDY, 0, self.limit(model))?;
        let opts = GenerateOptions {
            max_new: self.tokens,
            cache: true,
            compute: DType::F32,
        };
        let cont = |_| Ok(ControlFlow::Continue(()));
        let g = generate(model, &self.ids, &opts, &mut greedy, cont)?;
        let text = self
            .tok
            .decode(&g.tokens, false)
            .map_err(|e| anyhow::anyhow!("decoding a sample: {e}"))?;
        Ok(Sample {
            step,
            prompt: self.prompt.clone(),
            text,
            tokens: g.tokens,
        })
    }

    /// Ids the tokenizer can decode.
    fn limit(&self, model: &Gpt) -> usize {
        model.cfg.vocab_size.min(self.tok.get_vocab_size(true))
    }
}

impl Trainer {
    /// After the validation of `step`: the sample, when this is a sampled validation (every
    /// `every`-th one, counting from step 0, and the last). Rank 0 alone samples and writes.
    pub(super) fn sample_after_validation(&mut self, step: usize) -> Result<()> {
        let Some(s) = self.samples.as_ref() else {
            return Ok(());
        };
        let t = &self.cfg.train;
        let due = step == t.steps || (step / t.val_every).is_multiple_of(s.every);
        if !due || !dist::is_root() {
            return Ok(());
        }
        let rec = s.sample(&self.model, step)?;
        self.log.write(&rec)?;
        let line = format!("{}{}", rec.prompt, rec.text);
        self.console
            .line(&format!("step:{step}/{} sample: {line:?}", t.steps));
        Ok(())
    }
}
