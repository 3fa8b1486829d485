//! Picking the next token from a row of logits: greedy, or sampled with a temperature, top-k and
//! top-p (nucleus, Holtzman et al. 2019, arXiv 1904.09751) from a seeded RNG, so that a seed
//! gives the same text on every run.

use anyhow::{bail, Result};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Logits are divided by it before the softmax; 0 picks the most likely token (greedy).
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (None: all).
    pub top_k: Option<usize>,
    /// Keep the fewest most likely tokens whose probabilities sum to at least `p`, in (0, 1].
    pub top_p: f64,
}

impl SamplingParams {
    /// Greedy decoding: always the most likely token.
    pub const GREEDY: SamplingParams = SamplingParams {
        temperature: 0.0,
        top_k: None,
        top_p: 1.0,
    };

    /// Errors name the flag and what it takes.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            bail!(
                "--temperature {}: must be a finite number >= 0 (0 is greedy)",
                self.temperature
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bail!("--top-p {}: must be in (0, 1]", self.top_p);
        }
        if self.top_k == Some(0) {
            bail!("--top-k 0: must be at least 1 (leave it out to keep every token)");
        }
        Ok(())
    }
}

/// Chooses tokens by [`SamplingParams`] with its own RNG.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Ids at or above this are never chosen (a model vocabulary padded past the tokenizer's).
    limit: usize,
    /// Scratch: (logit, id) of the candidates of one draw.
    cand: Vec<(f32, u32)>,
}

impl Sampler {
    /// A sampler drawing from `StdRng::seed_from_u64(seed)`, choosing among ids below `limit`.
    pub fn new(params: SamplingParams, seed: u64, limit: usize) -> Result<Sampler> {
        params.validate()?;
        Ok(Sampler {
            params,
            rng: StdRng::seed_from_u64(seed),
            limit,
            cand: Vec::new(),
        })
    }

    /// The next token for one row of logits. NaN logits are never chosen; a row with no finite
    /// logit is an error (the weights are broken).
    pub fn pick(&mut self, logits: &[f32]) -> Result<u32> {
        let row = &logits[..self.limit.min(logits.len())];
        if self.params.temperature == 0.0 {
            return argmax(row);
        }
        let inv_t = 1.0 / self.params.temperature;
        self.cand.clear();
        self.cand.extend(
            row.iter()
                .enumerate()
                .filter(|(_, x)| !x.is_nan())
                .map(|(i, &x)| (x, i as u32)),
        );
        if !self.cand.iter().any(|c| c.0.is_finite()) {
            bail!("sampling: no finite logit in a row of {}", row.len());
        }
        // Most likely first; ties by the lower id, so the order (and the draw) is deterministic.
        let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if let Some(k) = self.params.top_k.filter(|&k| k < self.cand.len()) {
            self.cand.select_nth_unstable_by(k - 1, desc);
            self.cand.truncate(k);
        }
        self.cand.sort_unstable_by(desc);
        if self.cand[0].0 == f32::INFINITY {
            return Ok(self.cand[0].1);
        }
        // Softmax of logit/T in f64, shifted by the max.
        let max = self.cand[0].0 as f64;
        let mut probs: Vec<f64> = self
            .cand
            .iter()
            .map(|c| ((c.0 as f64 - max) * inv_t).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        // Nucleus: the shortest most-likely prefix whose mass reaches top_p (at least one token).
        let mut keep = probs.len();
        if self.params.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= self.params.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        let mass: f64 = probs[..keep].iter().sum();
        let mut u = self.rng.random::<f64>() * mass;
        for (i, p) in probs[..keep].iter().enumerate() {
            if u < *p {
                return Ok(self.cand[i].1);
            }
            u -= p;
        }
        // Rounding left u just past the last kept token.
        Ok(self.cand[keep - 1].1)
    }
}

/// The id of the largest logit (the lowest such id on ties); NaN is never the largest.
pub fn argmax(row: &[f32]) -> Result<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in row.iter().enumerate() {
        if !x.is_nan() && best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    match best {
        Some((i, x)) if x > f32::NEG_INFINITY => Ok(i as u32),
        _ => bail!("sampling: no finite logit in a row of {}", row.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f64, top_k: Option<usize>, top_p: f64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
        }
    }

    /// How often each id is drawn in `n` draws.
    fn counts(p: SamplingParams, logits: &[f32], n: usize) -> Vec<usize> {
        let mut s = Sampler::new(p, 7, logits.len()).unwrap();
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[s.pick(logits).unwrap() as usize] += 1;
        }
        c
    }

    #[test]
    fn greedy_takes_the_first_largest_and_skips_nan() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]).unwrap(), 1);
        assert_eq!(argmax(&[f32::NAN, -5.0, -7.0]).unwrap(), 1);
        assert!(argmax(&[f32::NAN, f32::NAN]).is_err());
        assert!(argmax(&[f32::NEG_INFINITY]).is_err());
        let mut s = Sampler::new(SamplingParams::GREEDY, 0, 3).unwrap();
        // The limit hides ids past the tokenizer's vocabulary.
        assert_eq!(s.pick(&[0.0, 1.0, 0.5, 9.0]).unwrap(), 1);
    }

    #[test]
    fn a_seed_gives_the_same_draws_and_another_seed_others() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 37 % 101) as f32) / 30.0).collect();
        let p = params(1.0, Some(50), 0.9);
        let draw = |seed| {
            let mut s = Sampler::new(p, seed, 500).unwrap();
            (0..64)
                .map(|_| s.pick(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn draws_follow_the_softmax_of_logits_over_temperature() {
        // p ∝ exp(l / T): at T = 0.5, logits 0, ln 2, ln 3 give weights 1 : 4 : 9.
        let l = [0.0, 2f32.ln(), 3f32.ln()];
        let c = counts(params(0.5, None, 1.0), &l, 28_000);
        for (got, want) in c.iter().zip([2000.0, 8000.0, 18000.0]) {
            assert!(
                (*got as f64 - want).abs() < 5.0 * want.sqrt(),
                "{c:?} vs 2000/8000/18000"
            );
        }
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        // Probabilities 0.5, 0.25, 0.125, 0.125 at T = 1.
        let l = [8f32.ln(), 4f32.ln(), 2f32.ln(), 2f32.ln()];
        let c = counts(params(1.0, Some(2), 1.0), &l, 3000);
        assert_eq!((c[2], c[3]), (0, 0), "{c:?}");
        assert!(c[0] > c[1] && c[1] > 700, "{c:?}");
        // top_p = 0.75 keeps exactly {0, 1}; 0.76 needs a third token (id 2: ties by lower id).
        let c = counts(params(1.0, None, 0.75), &l, 3000);
        assert_eq!((c[2], c[3]), (0, 0), "{c:?}");
        let c = counts(params(1.0, None, 0.76), &l, 3000);
        assert!(c[2] > 0 && c[3] == 0, "{c:?}");
        // The smallest nucleus is one token: greedy.
        let c = counts(params(1.0, None, 0.01), &l, 100);
        assert_eq!(c[0], 100);
    }

    #[test]
    fn bad_parameters_name_the_flag() {
        for (p, flag) in [
            (params(-0.1, None, 1.0), "--temperature"),
            (params(f64::NAN, None, 1.0), "--temperature"),
            (params(1.0, None, 0.0), "--top-p"),
            (params(1.0, None, 1.5), "--top-p"),
            (params(1.0, Some(0), 1.0), "--top-k"),
        ] {
            let e = Sampler::new(p, 0, 10).err().unwrap().to_string();
            assert!(e.starts_with(flag), "{e}");
        }
    }
}
