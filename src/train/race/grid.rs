//! `--tune KEY=GRID`: what a grid says (multipliers of the method's preset value, or plain
//! numbers), which config key it means for each method, and how a grid grows one point outward.

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use crate::optim::Method;

/// One value of a grid as written: `0.5x` (times the method's preset value) or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum GridValue {
    Times(f64),
    Plain(f64),
}

/// One `--tune KEY=GRID` flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneArg {
    /// As written: `lr`, a field of the method's own `[optim.<method>]` table, or a dotted key.
    pub key: String,
    pub grid: Vec<GridValue>,
    /// The flag's value as written, for messages and the report.
    pub text: String,
}

/// Parse one `--tune` value.
pub fn parse_tune(text: &str) -> Result<TuneArg> {
    let (key, grid) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("--tune {text}: expected KEY=GRID, e.g. --tune lr=0.5x,1x,2x"))?;
    let key = key.trim();
    if key.is_empty() || key.contains(char::is_whitespace) || key.split('.').any(str::is_empty) {
        bail!("--tune {text}: `{key}` is not a config key (e.g. lr, momentum, optim.head.lr)");
    }
    super::spec::check_override(text, "--tune")?;
    if grid.trim().is_empty() {
        bail!("--tune {text}: empty grid (e.g. --tune {key}=0.5x,1x,2x)");
    }
    let grid = grid
        .split(',')
        .map(|v| parse_value(v.trim()).map_err(|e| anyhow!("--tune {text}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    if grid.len() < 2 {
        bail!("--tune {text}: a grid needs at least 2 values");
    }
    Ok(TuneArg {
        key: key.to_string(),
        grid,
        text: text.to_string(),
    })
}

fn parse_value(v: &str) -> Result<GridValue> {
    if v.is_empty() {
        bail!("empty value in the grid");
    }
    let (num, times) = match v.strip_suffix(['x', 'X']) {
        Some(n) => (n.trim(), true),
        None => (v, false),
    };
    let x: f64 = num
        .parse()
        .ok()
        .filter(|x: &f64| x.is_finite())
        .ok_or_else(|| anyhow!("`{v}` is not a number or a multiplier like 0.5x"))?;
    match times {
        true if x <= 0.0 => bail!("`{v}`: a multiplier must be > 0"),
        true => Ok(GridValue::Times(x)),
        false => Ok(GridValue::Plain(x)),
    }
}

/// Parse every `--tune`; a key may be tuned once.
pub fn parse_tunes(texts: &[String]) -> Result<Vec<TuneArg>> {
    let args = texts
        .iter()
        .map(|t| parse_tune(t))
        .collect::<Result<Vec<_>>>()?;
    for (i, a) in args.iter().enumerate() {
        if args[..i].iter().any(|b| b.key == a.key) {
            bail!("--tune {}: {} is tuned twice", a.text, a.key);
        }
    }
    Ok(args)
}

/// The `[optim.*]` table of a method: its registry name with `_` for `-`.
pub fn section(m: Method) -> String {
    m.name().replace('-', "_")
}

/// The config key `key` means for `m`: `lr` and bare fields are in the method's own table.
pub fn key_path(key: &str, m: Method) -> String {
    if key.contains('.') {
        key.to_string()
    } else {
        format!("optim.{}.{key}", section(m))
    }
}

/// Whether tuning `path` can change a run of `m`: another method's table cannot, nor can the
/// head table under AdamW (which has no head group).
fn applies(path: &str, m: Method) -> bool {
    let mut parts = path.split('.');
    if parts.next() != Some("optim") {
        return true;
    }
    let Some(table) = parts.next() else {
        return true;
    };
    let own = section(m);
    let other_method = Method::ALL
        .iter()
        .any(|o| section(*o) == table && table != own);
    !(other_method || (table == "head" && m == Method::AdamW))
}

/// The value at a dotted `path` of a config as TOML.
fn lookup<'a>(cfg: &'a toml::Value, path: &str) -> Option<&'a toml::Value> {
    path.split('.').try_fold(cfg, |v, k| v.as_table()?.get(k))
}

/// One tuned key of one contestant: its values, sorted, as the grid grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// As written in `--tune` (it also names the run directories).
    pub key: String,
    /// The config key.
    pub path: String,
    /// The contestant's own value before tuning (what `1x` means).
    pub base: f64,
    /// An integer field: values are rounded to whole numbers.
    pub integer: bool,
    /// The first grid, sorted ascending.
    pub values: Vec<f64>,
}

impl Axis {
    /// The axis `arg` gives contestant `label` (method `m`, config `cfg`), or `None` when the key
    /// does not apply to the method.
    pub fn resolve(
        arg: &TuneArg,
        label: &str,
        m: Method,
        cfg: &toml::Value,
    ) -> Result<Option<Axis>> {
        let path = key_path(&arg.key, m);
        let Some(v) = lookup(cfg, &path).filter(|_| applies(&path, m)) else {
            return Ok(None);
        };
        let (base, integer) = match v {
            toml::Value::Integer(i) => (*i as f64, true),
            toml::Value::Float(f) => (*f, false),
            other => bail!("--tune {}: {path} = {other} is not a number", arg.text),
        };
        let mut values: Vec<f64> = arg
            .grid
            .iter()
            .map(|g| match g {
                GridValue::Times(t) => round_value(base * t, integer),
                GridValue::Plain(x) if integer => x.round(),
                GridValue::Plain(x) => *x,
            })
            .collect();
        values.sort_by(f64::total_cmp);
        if let Some(w) = values.windows(2).find(|w| w[0] == w[1]) {
            bail!(
                "--tune {}: {label}'s grid has {} twice ({path} = {})",
                arg.text,
                fmt_value(w[0], integer),
                fmt_value(base, integer)
            );
        }
        Ok(Some(Axis {
            key: arg.key.clone(),
            path,
            base,
            integer,
            values,
        }))
    }

    /// `KEY=VALUE` for `--set`.
    pub fn set(&self, v: f64) -> String {
        format!("{}={}", self.path, fmt_value(v, self.integer))
    }

    /// `v` as a multiple of the preset value (`0.25x`), when that is defined.
    pub fn times(&self, v: f64) -> Option<String> {
        (self.base != 0.0).then(|| format!("{}x", round_sig(v / self.base, 3)))
    }
}

/// `x` to 6 significant digits, so that `3x` of 0.00036 names a run `lr0.00108`, not
/// `lr0.0010799999999999998`.
fn round_sig(x: f64, digits: usize) -> f64 {
    format!("{x:.*e}", digits - 1).parse().unwrap_or(x)
}

fn round_value(x: f64, integer: bool) -> f64 {
    if integer {
        x.round()
    } else {
        round_sig(x, 6)
    }
}

/// A value as written in `--set` and in run names: the shortest form that reads back exactly.
pub fn fmt_value(v: f64, integer: bool) -> String {
    if integer {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The next value outward from the upper (`up`) or lower edge of sorted `values` (≥ 2): one more
/// step of the edge's own ratio when both edge values share a sign (a geometric grid stays
/// geometric), else of its difference. `None` where that would cross zero (a grid on one side of
/// 0 stays there: 0 is the end of a non-negative hyperparameter's range) or, on an integer axis,
/// not move.
pub fn grow(values: &[f64], up: bool, integer: bool) -> Option<f64> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let (edge, inner) = if up {
        (values[n - 1], values[n - 2])
    } else {
        (values[0], values[1])
    };
    let next = if edge * inner > 0.0 {
        edge * (edge / inner)
    } else {
        edge + (edge - inner)
    };
    let mut next = round_value(next, integer);
    if integer && next == edge {
        next = if up { edge + 1.0 } else { edge - 1.0 };
    }
    let nonneg = values.iter().all(|v| *v >= 0.0);
    let nonpos = values.iter().all(|v| *v <= 0.0);
    let crosses = (nonneg && next < 0.0) || (nonpos && next > 0.0);
    (next.is_finite() && next != edge && !crosses).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_parse_and_bad_ones_are_refused() {
        let t = parse_tune("lr=0.25x, 1X,3e-4").unwrap();
        assert_eq!(t.key, "lr");
        assert_eq!(
            t.grid,
            vec![
                GridValue::Times(0.25),
                GridValue::Times(1.0),
                GridValue::Plain(3e-4)
            ]
        );
        for (bad, why) in [
            ("lr", "expected KEY=GRID"),
            ("lr=", "empty grid"),
            ("lr=1x,,2x", "empty value"),
            ("lr=fast,1x", "not a number"),
            ("lr=0x,1x", "must be > 0"),
            ("lr=-2x,1x", "must be > 0"),
            ("lr=inf,1", "not a number"),
            ("lr=1x", "at least 2 values"),
            ("=1,2", "not a config key"),
            ("optim..lr=1,2", "not a config key"),
            ("seed=1,2", "cannot be overridden"),
            ("optim.name=1,2", "cannot be overridden"),
        ] {
            let e = parse_tune(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.starts_with("--tune"), "{bad}: {e}");
        }
        let e = parse_tunes(&["lr=1x,2x".into(), "lr=3x,4x".into()]).unwrap_err();
        assert!(e.to_string().contains("tuned twice"), "{e}");
    }

    #[test]
    fn keys_name_the_method_s_own_table() {
        assert_eq!(key_path("lr", Method::NewtonMuon), "optim.newton_muon.lr");
        assert_eq!(key_path("momentum", Method::Muon), "optim.muon.momentum");
        assert_eq!(
            key_path("train.warmdown_steps", Method::Neon),
            "train.warmdown_steps"
        );
        assert!(applies("optim.muon.lr", Method::Muon));
        assert!(!applies("optim.muon.lr", Method::AdamW));
        assert!(!applies("optim.head.lr", Method::AdamW));
        assert!(applies("optim.head.lr", Method::Neon));
        assert!(applies("train.warmdown_steps", Method::AdamW));
    }

    #[test]
    fn an_axis_takes_multipliers_of_the_contestant_s_own_value() {
        let cfg: toml::Value = toml::from_str(
            "[optim.muon]\nlr = 0.00036\nscale = \"record4\"\n[train]\nwarmdown_steps = 30\n",
        )
        .unwrap();
        let arg = parse_tune("lr=3x,0.25x,0.001").unwrap();
        let a = Axis::resolve(&arg, "muon", Method::Muon, &cfg)
            .unwrap()
            .unwrap();
        assert_eq!(a.values, vec![0.00009, 0.001, 0.00108]);
        assert_eq!(a.set(a.values[2]), "optim.muon.lr=0.00108");
        assert_eq!(a.times(a.values[0]).as_deref(), Some("0.25x"));
        // The key is not AdamW's: no axis (the race checks that some contestant has it).
        assert!(Axis::resolve(&arg, "adamw", Method::AdamW, &cfg)
            .unwrap()
            .is_none());
        let w = parse_tune("train.warmdown_steps=0.5x,1x,1.1x").unwrap();
        let a = Axis::resolve(&w, "muon", Method::Muon, &cfg)
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.values.clone(), a.integer),
            (vec![15.0, 30.0, 33.0], true)
        );
        assert_eq!(a.set(15.0), "train.warmdown_steps=15");
        let e = Axis::resolve(
            &parse_tune("scale=1,2").unwrap(),
            "muon",
            Method::Muon,
            &cfg,
        );
        assert!(e.unwrap_err().to_string().contains("is not a number"));
        let e = Axis::resolve(
            &parse_tune("lr=1x,0.00036").unwrap(),
            "muon",
            Method::Muon,
            &cfg,
        );
        assert!(e.unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn grids_grow_by_their_edge_step_and_never_across_zero() {
        let lr = [0.001, 0.002, 0.004];
        assert_eq!(grow(&lr, true, false), Some(0.008));
        assert_eq!(grow(&lr, false, false), Some(0.0005));
        // Uneven: the edge's own ratio.
        assert_eq!(
            grow(&[0.001, 0.003, 0.004], false, false),
            Some(0.000333333)
        );
        let wd = [0.0, 0.05, 0.1];
        assert_eq!(
            grow(&wd, true, false),
            Some(0.2),
            "geometric where the edge pair is > 0"
        );
        assert_eq!(grow(&wd, false, false), None, "below 0");
        // Where an edge pair spans 0: its difference.
        assert_eq!(grow(&[-0.1, 0.0, 0.05], true, false), Some(0.1));
        assert_eq!(grow(&[-0.1, 0.0, 0.05], false, false), Some(-0.2));
        assert_eq!(
            grow(&[1.0, 2.0], false, true),
            Some(0.0),
            "integer: 0.5 rounds back to 1"
        );
        assert_eq!(grow(&[0.0, 1.0], false, true), None);
        assert_eq!(grow(&[-2.0, -1.0], true, false), Some(-0.5));
        assert_eq!(grow(&[1.0], true, false), None);
    }
}
