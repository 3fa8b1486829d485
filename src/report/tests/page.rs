//! The HTML page: self-contained, its embedded data equal to the logs, the vendored chart library
//! unchanged. (The page's behaviour in a browser: tests/browser/check-report.mjs.)
use super::*;
use sha2::{Digest, Sha256};

/// The JSON the page's script reads.
fn page_data(page: &str) -> serde_json::Value {
    let start = page.find("id=\"report-data\">").unwrap() + "id=\"report-data\">".len();
    let end = start + page[start..].find("</script>").unwrap();
    serde_json::from_str(&page[start..end]).unwrap()
}

#[test]
fn page_is_self_contained() {
    let page = render_html(&all_fixtures(), None).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<td>not reached</td>") && page.contains("Welch"));
    assert!(page.contains("<table class=\"sortable\" id=\"runs\">"));
    // Scripts and styles are inline: nothing to load from elsewhere.
    for external in [
        "<script src",
        "<link",
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
    ] {
        assert!(!page.contains(external), "external asset: {external}");
    }
    assert!(page.contains("uPlot") && page.contains("window.speedrunReport"));
    // The data block is JSON and cannot close its script element early.
    let data = page_data(&page);
    assert_eq!(data["runs"].as_array().unwrap().len(), 6);
    let start = page.find("id=\"report-data\">").unwrap();
    let block = &page[start..start + page[start..].find("</script>").unwrap()];
    assert!(!block[1..].contains("</"), "an unescaped </ in the data");
}

#[test]
fn a_run_name_with_markup_stays_inside_the_data() {
    // `<!--<script` in a script element makes the HTML parser wait for a second `</script>`:
    // the page's own code would be swallowed (no chart in Chromium).
    let mut run = fixture("muon_s0");
    run.name = "<!--<script</script>".to_string();
    let page = render_html(&[run], None).unwrap();
    let start = page.find("id=\"report-data\">").unwrap() + "id=\"report-data\">".len();
    let block = &page[start..start + page[start..].find("</script>").unwrap()];
    assert!(!block.contains('<'), "a raw < in the data: {block:.200}");
    assert_eq!(page_data(&page)["runs"][0]["label"], "<!--<script</script>");
}

#[test]
fn page_data_is_the_logs() {
    let runs = all_fixtures();
    let page = render_html(&runs, Some(3.3)).unwrap();
    let data = page_data(&page);
    assert_eq!(data["target"], 3.3);
    for (j, name) in data["runs"].as_array().unwrap().iter().zip(FIXTURE_NAMES) {
        assert_eq!(j["label"], name);
        let log = raw_log(name);
        let vals: Vec<&serde_json::Value> = log.iter().filter(|v| v["kind"] == "val").collect();
        let trains: Vec<&serde_json::Value> = log.iter().filter(|v| v["kind"] == "train").collect();
        let col =
            |c: &str, k: &str| -> Vec<serde_json::Value> { j[c][k].as_array().unwrap().clone() };
        assert_eq!(
            col("val", "s"),
            vals.iter().map(|v| v["step"].clone()).collect::<Vec<_>>()
        );
        assert_eq!(
            col("val", "y"),
            vals.iter()
                .map(|v| v["val_loss"].clone())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            col("val", "t"),
            vals.iter().map(|v| v["tokens"].clone()).collect::<Vec<_>>(),
            "{name}"
        );
        assert_eq!(
            col("train", "y"),
            trains.iter().map(|v| v["loss"].clone()).collect::<Vec<_>>()
        );
        // Learning rates are "other scalars", by run.
        let lrs = &data["scalars"]["lr/head"];
        assert_eq!(lrs.as_array().unwrap().len(), 6, "one slot per run: {lrs}");
    }
    let groups = data["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["runs"], serde_json::json!([0, 1, 2]));
    assert!(groups[0]["val"]["lo"].is_array() && groups[0]["val"]["hi"].is_array());
    assert_eq!(data["x"], "step");
    let opts = HtmlOpts {
        x: XAxis::Time,
        log_y: true,
        refresh: Some(5),
        ..html_opts()
    };
    let page = Comparison::new(&runs, None).html(&opts).unwrap();
    let d = page_data(&page);
    assert_eq!(
        (d["x"].as_str(), d["logY"].as_bool(), d["refresh"].as_u64()),
        (Some("time"), Some(true), Some(5))
    );
    assert!(page.contains("live: reloads every 5 s"));
}

#[test]
fn vendored_uplot_is_unchanged() {
    // assets/uplot/SHA256SUMS records the files as copied from the npm package (assets/README.md).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/uplot");
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 3);
    for line in sums.lines() {
        let (hash, file) = line.split_once("  ").unwrap();
        let got = Sha256::digest(std::fs::read(dir.join(file)).unwrap());
        let got: String = got.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, hash, "{file}");
    }
    let js = std::fs::read_to_string(dir.join("uPlot.iife.min.js")).unwrap();
    assert!(js.starts_with("/*! https://github.com/leeoniya/uPlot (v1.6.32) */"));
}

#[test]
fn page_carries_each_runs_samples_from_its_log() {
    let page = render_html(&all_fixtures(), None).unwrap();
    let data = page_data(&page);
    let per_run = data["samples"].as_array().unwrap();
    assert_eq!(per_run.len(), FIXTURE_NAMES.len());
    for (got, name) in per_run.iter().zip(FIXTURE_NAMES) {
        let want: Vec<serde_json::Value> = raw_log(name)
            .into_iter()
            .filter(|v| v["kind"] == "sample")
            .map(|v| serde_json::json!({"s": v["step"], "p": v["prompt"], "x": v["text"]}))
            .collect();
        assert_eq!(got.as_array().unwrap(), &want, "{name}");
    }
    // Two fixture runs have samples; one of them writes markup, which stays text in the data.
    assert_eq!(
        per_run
            .iter()
            .filter(|s| s.as_array().unwrap().len() == 3)
            .count(),
        2
    );
    // Every `<` of the embedded data is written \u003c (a run or a sample may hold markup).
    assert!(page.contains("\\u003cb>Romeo\\u003c/b> & all"));
    assert!(page.contains("id=\"samples-box\" hidden"));
}
