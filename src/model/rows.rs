//! Row kernels of the fused CPU sub-blocks (`blocks.rs`, `mlp_block.rs`), each with its
//! backward: RMSNorm (weightless, or with gains), Track 3's per-head q/k norm, the rotary
//! embedding together with the head-major relayout the attention kernel reads, exact GELU and
//! ReLU². Rows are token vectors in row-major (tokens × width) buffers; every kernel runs
//! in parallel over rows or heads.

use rayon::prelude::*;

use crate::cpu::vmath;

/// The (B, T, H, hd) geometry of a block's attention.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Heads {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub hd: usize,
}

impl Heads {
    pub fn width(&self) -> usize {
        self.h * self.hd
    }
    pub fn tokens(&self) -> usize {
        self.b * self.t
    }
}

/// Rotary cos/sin tables, (T, hd/2) each, row-major (docs/model.md, "Rotary").
pub(crate) struct Rope {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

/// `x · rsqrt(mean(x²) + eps)` per row of width `d`: (normed rows, 1/rms per row).
pub(crate) fn rms_forward(x: &[f32], d: usize, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let mut xn = vec![0f32; x.len()];
    let mut rstd = vec![0f32; x.len() / d];
    xn.par_chunks_mut(d)
        .zip(rstd.par_iter_mut())
        .zip(x.par_chunks(d))
        .for_each(|((o, r), row)| {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
            *r = 1.0 / (ms + eps).sqrt();
            o.iter_mut().zip(row).for_each(|(o, v)| *o = v * *r);
        });
    (xn, rstd)
}

/// The normed rows again, from `x` and the saved `rstd`.
pub(crate) fn rms_normed(x: &[f32], rstd: &[f32], d: usize) -> Vec<f32> {
    let mut xn = vec![0f32; x.len()];
    xn.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .zip(rstd.par_iter())
        .for_each(|((o, row), r)| o.iter_mut().zip(row).for_each(|(o, v)| *o = v * r));
    xn
}

/// `dx += r·(g − y·⟨g, y⟩/d)` per row, the gradient through y = x·r with r = (mean(x²) + eps)^−½
/// (∂r/∂x_i = −r³·x_i/d), given the normed rows `y` and the gradient `g` with respect to them.
pub(crate) fn rms_backward_add(dx: &mut [f32], g: &[f32], y: &[f32], rstd: &[f32], d: usize) {
    dx.par_chunks_mut(d)
        .zip(g.par_chunks(d))
        .zip(y.par_chunks(d))
        .zip(rstd.par_iter())
        .for_each(|(((dx, g), y), r)| {
            let dot = g.iter().zip(y).map(|(a, b)| a * b).sum::<f32>() / d as f32;
            for ((dx, g), y) in dx.iter_mut().zip(g).zip(y) {
                *dx += r * (g - y * dot);
            }
        });
}

/// `y = xn ⊙ gains` per row (F.rms_norm's weight, applied after normalising).
pub(crate) fn scale_rows(xn: &[f32], gains: &[f32]) -> Vec<f32> {
    let d = gains.len();
    let mut y = vec![0f32; xn.len()];
    y.par_chunks_mut(d)
        .zip(xn.par_chunks(d))
        .for_each(|(y, x)| {
            y.iter_mut()
                .zip(x)
                .zip(gains)
                .for_each(|((y, x), g)| *y = x * g)
        });
    y
}

/// The backward of [`scale_rows`]: `dy ⊙ gains` in place, and Σ_rows dy ⊙ xn (the gains'
/// gradient, summed in f64 over the rows).
pub(crate) fn scale_rows_backward(dy: &mut [f32], xn: &[f32], gains: &[f32]) -> Vec<f32> {
    let d = gains.len();
    let dg = (0..d)
        .into_par_iter()
        .map(|j| {
            dy.chunks(d)
                .zip(xn.chunks(d))
                .map(|(g, x)| (g[j] * x[j]) as f64)
                .sum::<f64>() as f32
        })
        .collect();
    dy.par_chunks_mut(d)
        .for_each(|r| r.iter_mut().zip(gains).for_each(|(g, w)| *g *= w));
    dg
}

/// Track 3's per-head q/k norm as the fused attention keeps it for its backward: the normed q
/// and k heads of every packed row (B·T × 2·width, q then k) and their 1/rms (B·T × 2·H).
pub(crate) struct QkNormed {
    pub y: Vec<f32>,
    pub r: Vec<f32>,
}

/// A weightless RMSNorm (epsilon `eps`) of every q and k head in the packed rows `qkv`
/// (B·T × 3·width), in place, before rotary (Track 3, train_gpt_simple.py:107).
pub(crate) fn qk_norm_rows(qkv: &mut [f32], g: Heads, eps: f32) -> QkNormed {
    let (d, hd, h) = (g.width(), g.hd, g.h);
    let mut y = vec![0f32; g.tokens() * 2 * d];
    let mut r = vec![0f32; g.tokens() * 2 * h];
    qkv.par_chunks_mut(3 * d)
        .zip(y.par_chunks_mut(2 * d))
        .zip(r.par_chunks_mut(2 * h))
        .for_each(|((row, y), r)| {
            for (x, (y, r)) in row[..2 * d]
                .chunks_mut(hd)
                .zip(y.chunks_mut(hd).zip(r.iter_mut()))
            {
                let ms = x.iter().map(|v| v * v).sum::<f32>() / hd as f32;
                *r = 1.0 / (ms + eps).sqrt();
                x.iter_mut().zip(y.iter_mut()).for_each(|(x, y)| {
                    *x *= *r;
                    *y = *x;
                });
            }
        });
    QkNormed { y, r }
}

/// The backward of [`qk_norm_rows`] on the packed gradient rows `dqkv`, in place:
/// `g ← r·(g − y·⟨g, y⟩/hd)` per q and k head.
pub(crate) fn qk_norm_backward(dqkv: &mut [f32], saved: &QkNormed, g: Heads) {
    let (d, hd, h) = (g.width(), g.hd, g.h);
    dqkv.par_chunks_mut(3 * d)
        .zip(saved.y.par_chunks(2 * d))
        .zip(saved.r.par_chunks(2 * h))
        .for_each(|((row, y), r)| {
            for (gh, (yh, &rh)) in row[..2 * d].chunks_mut(hd).zip(y.chunks(hd).zip(r)) {
                let dot = gh.iter().zip(yh).map(|(a, b)| a * b).sum::<f32>() / hd as f32;
                gh.iter_mut()
                    .zip(yh)
                    .for_each(|(g, y)| *g = rh * (*g - y * dot));
            }
        });
}

/// y1 = x1·cos + x2·sin, y2 = x2·cos − x1·sin on one head vector (x1 its first half), times
/// `scale`.
fn rotate(dst: &mut [f32], src: &[f32], cos: &[f32], sin: &[f32], scale: f32) {
    let half = cos.len();
    for j in 0..half {
        let (x1, x2) = (src[j], src[j + half]);
        dst[j] = (x1 * cos[j] + x2 * sin[j]) * scale;
        dst[j + half] = (x2 * cos[j] - x1 * sin[j]) * scale;
    }
}

/// The transposed rotation: dx1 = cos·dy1 − sin·dy2, dx2 = sin·dy1 + cos·dy2, times `scale`.
fn rotate_back(dst: &mut [f32], src: &[f32], cos: &[f32], sin: &[f32], scale: f32) {
    let half = cos.len();
    for j in 0..half {
        let (y1, y2) = (src[j] * scale, src[j + half] * scale);
        dst[j] = cos[j] * y1 - sin[j] * y2;
        dst[j + half] = sin[j] * y1 + cos[j] * y2;
    }
}

/// q, k, v in (B, H, T, hd) from packed rows (B·T × 3·width): q rotated and multiplied by
/// `q_scale` (the softmax scale folded into q, as `forward.rs` does), k rotated, v copied.
pub(crate) fn split_qkv(
    qkv: &[f32],
    g: Heads,
    rope: &Rope,
    q_scale: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, d, half) = (g.t * g.hd, g.width(), g.hd / 2);
    let len = g.b * g.h * n;
    let (mut q, mut k, mut v) = (vec![0f32; len], vec![0f32; len], vec![0f32; len]);
    q.par_chunks_mut(n)
        .zip(k.par_chunks_mut(n))
        .zip(v.par_chunks_mut(n))
        .enumerate()
        .for_each(|(bh, ((qh, kh), vh))| {
            let (bi, hi) = (bh / g.h, bh % g.h);
            for ti in 0..g.t {
                let row = &qkv[(bi * g.t + ti) * 3 * d..][..3 * d];
                let at = hi * g.hd;
                let (c, s) = (
                    &rope.cos[ti * half..][..half],
                    &rope.sin[ti * half..][..half],
                );
                let o = ti * g.hd..(ti + 1) * g.hd;
                rotate(&mut qh[o.clone()], &row[at..at + g.hd], c, s, q_scale);
                rotate(&mut kh[o.clone()], &row[d + at..d + at + g.hd], c, s, 1.0);
                vh[o].copy_from_slice(&row[2 * d + at..2 * d + at + g.hd]);
            }
        });
    (q, k, v)
}

/// The gradient of [`split_qkv`]: packed rows (B·T × 3·width) from dq, dk, dv in (B, H, T, hd).
pub(crate) fn merge_qkv_grad(
    [dq, dk, dv]: [&[f32]; 3],
    g: Heads,
    rope: &Rope,
    q_scale: f32,
) -> Vec<f32> {
    let (d, half) = (g.width(), g.hd / 2);
    let mut out = vec![0f32; g.tokens() * 3 * d];
    out.par_chunks_mut(3 * d).enumerate().for_each(|(r, row)| {
        let (bi, ti) = (r / g.t, r % g.t);
        let (c, s) = (
            &rope.cos[ti * half..][..half],
            &rope.sin[ti * half..][..half],
        );
        for hi in 0..g.h {
            let src = ((bi * g.h + hi) * g.t + ti) * g.hd..;
            let at = hi * g.hd;
            rotate_back(
                &mut row[at..at + g.hd],
                &dq[src.clone()][..g.hd],
                c,
                s,
                q_scale,
            );
            rotate_back(
                &mut row[d + at..d + at + g.hd],
                &dk[src.clone()][..g.hd],
                c,
                s,
                1.0,
            );
            row[2 * d + at..2 * d + at + g.hd].copy_from_slice(&dv[src][..g.hd]);
        }
    });
    out
}

/// (B, H, T, hd) → rows (B·T × width).
pub(crate) fn merge_heads(x: &[f32], g: Heads) -> Vec<f32> {
    let d = g.width();
    let mut out = vec![0f32; g.tokens() * d];
    out.par_chunks_mut(d).enumerate().for_each(|(r, row)| {
        let (bi, ti) = (r / g.t, r % g.t);
        for hi in 0..g.h {
            let src = ((bi * g.h + hi) * g.t + ti) * g.hd;
            row[hi * g.hd..(hi + 1) * g.hd].copy_from_slice(&x[src..src + g.hd]);
        }
    });
    out
}

/// Rows (B·T × width) → (B, H, T, hd).
pub(crate) fn split_heads(x: &[f32], g: Heads) -> Vec<f32> {
    let (n, d) = (g.t * g.hd, g.width());
    let mut out = vec![0f32; g.b * g.h * n];
    out.par_chunks_mut(n).enumerate().for_each(|(bh, dst)| {
        let (bi, hi) = (bh / g.h, bh % g.h);
        for ti in 0..g.t {
            let src = (bi * g.t + ti) * d + hi * g.hd;
            dst[ti * g.hd..(ti + 1) * g.hd].copy_from_slice(&x[src..src + g.hd]);
        }
    });
    out
}

/// relu(h)² (Track 3's MLP, `x.relu().square()`) and its slope 2·relu(h), elementwise.
pub(crate) fn relu2_forward(h: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut a = vec![0f32; h.len()];
    let mut slope = vec![0f32; h.len()];
    a.par_chunks_mut(4096)
        .zip(slope.par_chunks_mut(4096))
        .zip(h.par_chunks(4096))
        .for_each(|((a, s), h)| {
            for ((a, s), &h) in a.iter_mut().zip(s.iter_mut()).zip(h) {
                let r = h.max(0.0);
                *a = r * r;
                *s = 2.0 * r;
            }
        });
    (a, slope)
}

/// Exact GELU (candle's `gelu_erf`, the record's nn.GELU()) and its slope, elementwise
/// (`vmath::gelu_and_slope`).
pub(crate) fn gelu_forward(h: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut a = vec![0f32; h.len()];
    let mut slope = vec![0f32; h.len()];
    a.par_chunks_mut(4096)
        .zip(slope.par_chunks_mut(4096))
        .zip(h.par_chunks(4096))
        .for_each(|((a, s), h)| vmath::gelu_and_slope(a, s, h));
    (a, slope)
}
