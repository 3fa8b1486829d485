//! The numeric ranges of config fields that serde cannot check: learning rates and weight
//! decays, betas and momenta, epsilons, tolerances and counts. A value out of range is an error
//! that names the field, before anything runs, rather than a diverged or silently wrong run.

use anyhow::{bail, Result};

use super::config::Config;

/// Error on the first field of `fields` whose value fails `ok`: "KEY = V must be WANT".
fn check_all(fields: &[(&str, f64)], ok: impl Fn(f64) -> bool, want: &str) -> Result<()> {
    match fields.iter().find(|(_, v)| !ok(*v)) {
        Some((key, v)) => bail!("{key} = {v} must be {want}"),
        None => Ok(()),
    }
}

impl Config {
    /// The optimizer fields with a range of their own: betas and momenta in [0, 1) (1 freezes the
    /// average, more makes it grow without bound), positive epsilons, tolerances and counts.
    pub(super) fn check_optim_ranges(&self) -> Result<()> {
        let o = &self.optim;
        let nm = &o.newton_muon;
        let unit = [
            ("optim.head.betas[0]", o.head.betas.0),
            ("optim.head.betas[1]", o.head.betas.1),
            ("optim.adamw.betas[0]", o.adamw.betas.0),
            ("optim.adamw.betas[1]", o.adamw.betas.1),
            ("optim.muon.momentum", o.muon.momentum),
            ("optim.newton_muon.momentum", nm.momentum),
            ("optim.neon.momentum", o.neon.momentum),
            ("optim.neon_fstar.momentum", o.neon_fstar.momentum),
        ];
        check_all(&unit, |v| (0.0..1.0).contains(&v), "in [0, 1)")?;
        let positive = [
            ("optim.head.eps", o.head.eps),
            ("optim.adamw.eps", o.adamw.eps),
            ("optim.neon.tol", o.neon.tol),
            ("optim.neon_fstar.tol", o.neon_fstar.tol),
            ("optim.newton_muon.init", nm.init),
        ];
        check_all(
            &positive,
            |v| v.is_finite() && v > 0.0,
            "a finite number > 0",
        )?;
        let ema = [("optim.newton_muon.ema", nm.ema)];
        check_all(&ema, |v| v > 0.0 && v <= 1.0, "in (0, 1]")?;
        let counts = [
            ("optim.newton_muon.refresh", nm.refresh),
            ("optim.neon.iters", o.neon.iters),
            ("optim.neon_fstar.iters", o.neon_fstar.iters),
            ("optim.neon_fstar.max_rank", o.neon_fstar.max_rank),
        ];
        if let Some((key, _)) = counts.iter().find(|(_, v)| *v == 0) {
            bail!("{key} = 0 must be > 0");
        }
        Ok(())
    }

    /// Every learning rate and weight decay (and Newton-Muon's ridge) must be a finite number
    /// ≥ 0: NaN or inf would only show as a diverged step, and a negative lr trains silently
    /// uphill.
    pub(super) fn check_rates(&self) -> Result<()> {
        let o = &self.optim;
        let rates = [
            ("optim.head.lr", o.head.lr),
            ("optim.head.weight_decay", o.head.weight_decay),
            ("optim.adamw.lr", o.adamw.lr),
            ("optim.adamw.weight_decay", o.adamw.weight_decay),
            ("optim.muon.lr", o.muon.lr),
            ("optim.muon.weight_decay", o.muon.weight_decay),
            ("optim.newton_muon.lr", o.newton_muon.lr),
            ("optim.newton_muon.head_lr", o.newton_muon.head_lr),
            ("optim.newton_muon.weight_decay", o.newton_muon.weight_decay),
            ("optim.newton_muon.ridge", o.newton_muon.ridge),
            ("optim.neon.lr", o.neon.lr),
            ("optim.neon.weight_decay", o.neon.weight_decay),
            ("optim.neon_fstar.lr", o.neon_fstar.lr),
            ("optim.neon_fstar.weight_decay", o.neon_fstar.weight_decay),
        ];
        check_all(
            &rates,
            |v| v.is_finite() && v >= 0.0,
            "a finite number >= 0",
        )
    }
}
