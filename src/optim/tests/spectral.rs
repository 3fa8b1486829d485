//! Singular values and norms against numpy's float64 SVD (`scripts/golden_spectral.py`), both
//! ways ([`SvMethod::Gram`] and [`SvMethod::Svd`]), and Newton-Muon's preconditioner diagnostics
//! against numpy's `eigvalsh`. The matrices are built here from the script's formula.
//!
//! Output of `.venv/bin/python scripts/golden_spectral.py`:
//! ```text
//! square {'rows': 6, 'cols': 6, 's': 0}
//!   sigma = [2.6584210905544228, 2.2995971400652735, 1.9870815965577218, 1.0397830518377902, 0.6442356908232011, 0.032621137199874466]
//!   fro = 4.219134452881433
//!   nuc = 8.661739707038285
//!   spec = 2.6584210905544228
//!   stable_rank = 2.5188318915529924
//!   nuc_fro_ratio = 4.214669519623613
//! tall {'rows': 9, 'cols': 5, 's': 1}
//!   sigma = [2.8475084106482984, 2.663578811454765, 2.2216190298245277, 1.9504776245492745, 0.7968008792678489]
//!   fro = 4.957600422814595
//!   nuc = 10.479984755744713
//!   spec = 2.8475084106482984
//!   stable_rank = 3.0311889516617603
//!   nuc_fro_ratio = 4.468669765255465
//! wide {'rows': 5, 'cols': 9, 's': 2}
//!   sigma = [2.888881427252946, 2.711084625712582, 1.6679886039807432, 1.4185510399932146, 0.941285227742207]
//!   fro = 4.6234301838076135
//!   nuc = 9.62779092468169
//!   spec = 2.888881427252946
//!   stable_rank = 2.561351455876616
//!   nuc_fro_ratio = 4.336353646809589
//! rank2 {'rows': 8, 'cols': 6, 's': 3, 'row_period': 2}
//!   sigma = [3.8903945930718105, 1.808250852981338, 4.2145603356252752e-16, 1.6624943304504788e-16, 3.54148364707537e-32, 9.087765710281737e-33]
//!   fro = 4.290098045162851
//!   nuc = 5.698645446053148
//!   spec = 3.8903945930718105
//!   stable_rank = 1.2160379518635744
//!   nuc_fro_ratio = 1.7644479002379763
//! graded {'rows': 7, 'cols': 7, 's': 5, 'col_decay': 0.1}
//!   sigma = [1.622261812148143, 0.15405249440733917, 0.01531019747635264, 0.0004450002246359042, 0.0001928189826843199, 8.556880258847209e-06, 1.2789511411159318e-06]
//!   fro = 1.6296319202854612
//!   nuc = 1.7922721590705548
//!   spec = 1.622261812148143
//!   stable_rank = 1.0091068527595115
//!   nuc_fro_ratio = 1.209564053007733
//! big {'rows': 96, 'cols': 64, 's': 4}
//!   sigma[0..3], sigma[last] = [12.941520257124608, 12.268261752294098, 11.526835861320134, 0.3918280324866891]
//!   fro = 56.817801711760204
//!   nuc = 397.7823059798362
//!   spec = 12.941520257124608
//!   stable_rank = 19.275171935747462
//!   nuc_fro_ratio = 49.01421692717029
//! precond one block (10x6 input)
//!   k_cond = 6.165810608974662
//!   ridge_share = 0.1666666798314209
//!   ridge_dominated = 0.16666666666666666
//! precond two blocks (10x6, 3x6 inputs)
//!   k_cond = 16.565123073706456
//!   ridge_share = 0.1666666822801514
//!   ridge_dominated = 0.3333333333333333
//! ```

use candle_core::{DType, Device, Tensor};

use crate::optim::kept::Precond;
use crate::optim::newton_muon::conditioning;
use crate::optim::spectral::{singular_values, Norms, SvMethod};

/// The script's `entry`: a smooth but generic pattern, shifted by the seed `s`.
fn entry(i: usize, j: usize, s: f64) -> f64 {
    let (i, j) = (i as f64, j as f64);
    ((i + 1.0) * 0.7548776662 * (j + 1.0) + 0.5698402910 * j * j + 1.3 * s).cos()
        + 0.25 * (2.1 * i - 0.9 * j + s).sin()
}

/// The script's `matrix`: fp32, rows repeating with period `period` (exact rank ≤ period),
/// column j scaled by `decay`^j.
fn matrix(rows: usize, cols: usize, s: f64, period: Option<usize>, decay: Option<f64>) -> Tensor {
    let data: Vec<f32> = (0..rows * cols)
        .map(|k| {
            let (i, j) = (k / cols, k % cols);
            let i = period.map_or(i, |p| i % p);
            let v = entry(i, j, s) * decay.map_or(1.0, |d| d.powi(j as i32));
            v as f32
        })
        .collect();
    Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
}

struct Case {
    name: &'static str,
    m: Tensor,
    /// Every singular value, or (for `big`) σ₁, σ₂, σ₃ and the last.
    sigma: &'static [f64],
    /// fro, nuc, spec, stable_rank, nuc_fro_ratio.
    norms: [f64; 5],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "square",
            m: matrix(6, 6, 0.0, None, None),
            sigma: &[
                2.6584210905544228,
                2.2995971400652735,
                1.9870815965577218,
                1.0397830518377902,
                0.6442356908232011,
                0.032621137199874466,
            ],
            norms: [
                4.219134452881433,
                8.661739707038285,
                2.6584210905544228,
                2.5188318915529924,
                4.214669519623613,
            ],
        },
        Case {
            name: "tall",
            m: matrix(9, 5, 1.0, None, None),
            sigma: &[
                2.8475084106482984,
                2.663578811454765,
                2.2216190298245277,
                1.9504776245492745,
                0.7968008792678489,
            ],
            norms: [
                4.957600422814595,
                10.479984755744713,
                2.8475084106482984,
                3.0311889516617603,
                4.468669765255465,
            ],
        },
        Case {
            name: "wide",
            m: matrix(5, 9, 2.0, None, None),
            sigma: &[
                2.888881427252946,
                2.711084625712582,
                1.6679886039807432,
                1.4185510399932146,
                0.941285227742207,
            ],
            norms: [
                4.6234301838076135,
                9.62779092468169,
                2.888881427252946,
                2.561351455876616,
                4.336353646809589,
            ],
        },
        Case {
            name: "rank2",
            m: matrix(8, 6, 3.0, Some(2), None),
            sigma: &[
                3.8903945930718105,
                1.808250852981338,
                4.2145603356252752e-16,
                1.6624943304504788e-16,
                3.54148364707537e-32,
                9.087765710281737e-33,
            ],
            norms: [
                4.290098045162851,
                5.698645446053148,
                3.8903945930718105,
                1.2160379518635744,
                1.7644479002379763,
            ],
        },
        Case {
            name: "graded",
            m: matrix(7, 7, 5.0, None, Some(0.1)),
            sigma: &[
                1.622261812148143,
                0.15405249440733917,
                0.01531019747635264,
                0.0004450002246359042,
                0.0001928189826843199,
                8.556880258847209e-06,
                1.2789511411159318e-06,
            ],
            norms: [
                1.6296319202854612,
                1.7922721590705548,
                1.622261812148143,
                1.0091068527595115,
                1.209564053007733,
            ],
        },
        Case {
            name: "big",
            m: matrix(96, 64, 4.0, None, None),
            sigma: &[
                12.941520257124608,
                12.268261752294098,
                11.526835861320134,
                0.3918280324866891,
            ],
            norms: [
                56.817801711760204,
                397.7823059798362,
                12.941520257124608,
                19.275171935747462,
                49.01421692717029,
            ],
        },
    ]
}

/// Each σᵢ within 1e-7·σ₁ of numpy's (the Gram route's bound is ~1.5e-8·σ₁, module docs), each
/// norm within 1e-7 relative; for every matrix and both methods.
#[test]
fn singular_values_and_norms_match_numpy() {
    let cases = cases();
    let mats: Vec<&Tensor> = cases.iter().map(|c| &c.m).collect();
    for method in [SvMethod::Gram, SvMethod::Svd] {
        let all = singular_values(&mats, method).unwrap();
        for (c, sv) in cases.iter().zip(&all) {
            let (r, k) = c.m.dims2().unwrap();
            assert_eq!(sv.len(), r.min(k), "{} {method:?}", c.name);
            let got: Vec<f64> = if c.sigma.len() == sv.len() {
                sv.clone()
            } else {
                vec![sv[0], sv[1], sv[2], sv[sv.len() - 1]]
            };
            for (g, want) in got.iter().zip(c.sigma) {
                assert!(
                    (g - want).abs() <= 1e-7 * c.sigma[0],
                    "{} {method:?}: sigma {g} vs numpy {want}",
                    c.name
                );
            }
            let n = Norms::of(sv);
            let got = [n.fro, n.nuc, n.spec, n.stable_rank, n.nuc_fro_ratio];
            for ((g, want), field) in got
                .iter()
                .zip(c.norms)
                .zip(["fro", "nuc", "spec", "sr", "nfr"])
            {
                assert!(
                    (g - want).abs() <= 1e-7 * want,
                    "{} {method:?}: {field} {g} vs numpy {want}",
                    c.name
                );
            }
        }
    }
}

/// The zero matrix has zero norms and ratios (not NaN); a non-finite entry gives NaN throughout.
#[test]
fn zero_and_non_finite_matrices() {
    let zero = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
    let mut bad = vec![1f32; 12];
    bad[5] = f32::NAN;
    let bad = Tensor::from_vec(bad, (4, 3), &Device::Cpu).unwrap();
    for method in [SvMethod::Gram, SvMethod::Svd] {
        let sv = singular_values(&[&zero, &bad], method).unwrap();
        assert_eq!(sv[0], vec![0.0; 3]);
        assert_eq!(Norms::of(&sv[0]), Norms::of(&[]));
        let n = Norms::of(&sv[0]);
        assert_eq!([n.fro, n.nuc, n.stable_rank, n.nuc_fro_ratio], [0.0; 4]);
        assert_eq!(sv[1].len(), 3);
        assert!(sv[1].iter().all(|x| x.is_nan()), "{method:?}");
    }
}

/// S = XᵀX/N in fp32, as Newton-Muon stores it.
fn statistic(rows: usize, cols: usize, s: f64) -> Tensor {
    let x = matrix(rows, cols, s, None, None)
        .to_dtype(DType::F64)
        .unwrap();
    (x.t().unwrap().matmul(&x).unwrap() / rows as f64)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

/// k_cond, ridge_share and ridge_dominated within 1e-6 relative of numpy's.
#[test]
fn preconditioner_conditioning_matches_numpy() {
    let (full, low) = (statistic(10, 6, 6.0), statistic(3, 6, 7.0));
    let golden: [(Vec<Tensor>, [f64; 3]); 2] = [
        (
            vec![full.clone()],
            [6.165810608974662, 0.1666666798314209, 0.16666666666666666],
        ),
        (
            vec![full, low],
            [16.565123073706456, 0.1666666822801514, 0.3333333333333333],
        ),
    ];
    for (blocks, want) in golden {
        let n = blocks.len();
        let c = conditioning(&Precond { blocks, ridge: 0.2 }).unwrap();
        let got = [c.k_cond, c.ridge_share, c.ridge_dominated];
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 1e-6 * w,
                "{n} blocks: {got:?} vs numpy {want:?}"
            );
        }
    }
}
