// Opens a `speedrun compare --html` page in headless Debian chromium (playwright-core drives
// /usr/bin/chromium; no browser is downloaded) and checks it as a reader would use it:
//   - the page loads from disk with no error and no network request;
//   - every run's val series is drawn: its points are the val records of its own log.jsonl (read
//     here, independently of speedrun), and hiding it from the legend changes the canvas pixels;
//   - a legend click hides a series in both charts and a second click restores the same pixels;
//   - the x-axis switch puts tokens and train time (from the logs) on the axis, log-y switches
//     the scale, drag zooms and double-click resets, hovering a point reads out its value;
//   - the runs table sorts by a column when its header is clicked;
//   - each run's `sample` records are listed beside the charts (step, val loss, prompt and text,
//     as text, not markup), a hidden run's samples go away with it, and hovering a chart marks
//     each run's sample nearest the cursor's step.
// `--mutants` then breaks the page in several ways (a run's data dropped, the legend toggle made
// a no-op, the axis switch ignored) and requires that each broken page fails the checks.
//
//   node check-report.mjs --html report.html --runs DIR... [--screenshot out.png] [--mutants]
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

function args() {
  const a = { runs: [], html: null, screenshot: null, mutants: false, browser: "/usr/bin/chromium" };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === "--html") a.html = argv[++i];
    else if (k === "--screenshot") a.screenshot = argv[++i];
    else if (k === "--mutants") a.mutants = true;
    else if (k === "--browser") a.browser = argv[++i];
    else if (k === "--runs") { while (argv[i + 1] && !argv[i + 1].startsWith("--")) a.runs.push(argv[++i]); }
    else throw new Error("unknown argument " + k);
  }
  if (!a.html || a.runs.length === 0) throw new Error("usage: check-report.mjs --html FILE --runs DIR... [--screenshot PNG] [--mutants]");
  return a;
}

// The val and sample records of a run directory's log.jsonl (a cut last line skipped, as a live
// log has).
function runRecords(dir) {
  const lines = fs.readFileSync(path.join(dir, "log.jsonl"), "utf8").split("\n");
  const val = [], samples = [];
  for (const l of lines) {
    let r;
    try { r = JSON.parse(l); } catch (e) { continue; }
    if (r.kind === "val" && Number.isFinite(r.val_loss)) val.push(r);
    if (r.kind === "sample") samples.push(r);
  }
  return { name: path.basename(dir), val, samples };
}

// The samples panel as the reader sees it: per run block, its rows' step line, text and mark.
const samplePanel = (page) => page.$$eval("#samples .run-samples", (blocks) => blocks.map((b) => ({
  name: b.querySelector(".run-name").textContent,
  rows: Array.from(b.querySelectorAll(".sample")).map((r) => ({
    head: r.querySelector(".at-step").textContent, text: r.querySelector(".text").textContent,
    bold: r.querySelector(".text b").textContent, at: r.classList.contains("at") })),
})));

class Checks {
  constructor(quiet) { this.passed = 0; this.failed = []; this.quiet = quiet; }
  ok(cond, what) {
    if (cond) this.passed++;
    else { this.failed.push(what); if (!this.quiet) console.log("FAIL " + what); }
  }
}

const launchArgs = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// Canvas pixels of a chart, as a string to compare.
const pixels = (page, chart) => page.evaluate((c) => {
  const u = window.speedrunReport.charts[c];
  return u.ctx.getImageData(0, 0, u.ctx.canvas.width, u.ctx.canvas.height).data.join(",");
}, chart);
function diff(a, b) {
  const x = a.split(","), y = b.split(",");
  let n = 0;
  for (let i = 0; i < x.length; i += 4) if (x[i] !== y[i] || x[i + 1] !== y[i + 1] || x[i + 2] !== y[i + 2]) n++;
  return n + Math.abs(x.length - y.length);
}

async function check(browser, file, runs, c, screenshot) {
  const page = await browser.newPage({ viewport: { width: 1500, height: 1100 } });
  const errors = [], requests = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.route("**/*", (route) => {
    const u = route.request().url();
    if (u.startsWith("file://")) return route.continue();
    requests.push(u);
    return route.abort();
  });
  await page.goto("file://" + path.resolve(file));
  await page.waitForFunction(() => window.speedrunReport && window.speedrunReport.charts.val, null, { timeout: 10000 }).catch(() => {});
  const ready = await page.evaluate(() => !!(window.speedrunReport && window.speedrunReport.charts.val));
  c.ok(ready, "the page builds its val chart");
  if (!ready) { c.ok(false, "page errors: " + errors.join("; ")); await page.close(); return; }

  // One series per run: seeds drawn one by one.
  const canGroup = await page.isEnabled("#grouped");
  if (canGroup && await page.isChecked("#grouped")) await page.click("#grouped");
  const legend = await page.$$eval("#legend button", (bs) => bs.map((b) => b.textContent));
  for (const r of runs) c.ok(legend.some((l) => l.startsWith(r.name)), `legend lists ${r.name}`);
  const series = await page.evaluate(() => {
    const u = window.speedrunReport.charts.val;
    return u.series.map((s, i) => ({ label: s.label, show: s.show, xs: u.data[0].filter((_, j) => u.data[i][j] != null), ys: u.data[i].filter((v) => v != null) }));
  });
  for (const r of runs) {
    const s = series.find((s) => s.label === r.name);
    c.ok(!!s, `val chart has a series for ${r.name}`);
    if (!s) continue;
    const want = r.val.map((v) => v.val_loss);
    c.ok(s.ys.length === want.length && want.every((v, i) => Math.abs(s.ys[i] - v) < 1e-4),
      `${r.name}: its val series is its log's val records (${s.ys.length} vs ${want.length} points)`);
    c.ok(JSON.stringify(s.xs) === JSON.stringify(r.val.map((v) => v.step)), `${r.name}: x = the records' steps`);
  }

  // Samples: every run's sample records, in order, as text; none for a run without them.
  const panel = await samplePanel(page);
  for (const r of runs) {
    const block = panel.find((b) => b.name === r.name);
    if (!r.samples.length) { c.ok(!block, `${r.name}: no samples, no block`); continue; }
    c.ok(!!block && block.rows.length === r.samples.length, `${r.name}: ${r.samples.length} samples listed (got ${block ? block.rows.length : "no block"})`);
    if (!block) continue;
    r.samples.forEach((smp, i) => {
      const row = block.rows[i] || { head: "", text: "", bold: "" };
      const v = r.val.find((x) => x.step === smp.step);
      const head = "step " + smp.step + (v ? " · val " + v.val_loss.toFixed(4) : "");
      c.ok(row.head === head && row.text === smp.prompt + smp.text && row.bold === smp.prompt,
        `${r.name}: sample ${i} reads "${head}" and its prompt + text (got "${row.head}", "${row.text.slice(0, 60)}")`);
    });
  }
  const withSamples = runs.filter((r) => r.samples.length >= 2);
  c.ok(withSamples.length > 0, "some run has samples to show");

  // Legend toggles: each run's series is drawn (hiding it changes pixels) and comes back.
  const before = { val: await pixels(page, "val"), train: await pixels(page, "train") };
  for (const r of runs) {
    const btn = page.locator("#legend button", { hasText: r.name }).first();
    await btn.click();
    const hidden = await page.evaluate((n) => ["val", "train"].map((k) => {
      const u = window.speedrunReport.charts[k];
      return u.series.filter((s) => s.label === n).every((s) => !s.show);
    }), r.name);
    const changed = diff(before.val, await pixels(page, "val"));
    c.ok(hidden.every(Boolean), `${r.name}: a legend click hides it in both charts`);
    if (r.samples.length) {
      const gone = !(await samplePanel(page)).some((b) => b.name === r.name);
      c.ok(gone, `${r.name}: hiding it hides its samples`);
    }
    c.ok(changed > 20, `${r.name}: its line is drawn (${changed} val-chart pixels change when it is hidden)`);
    await btn.click();
    const back = diff(before.val, await pixels(page, "val")) + diff(before.train, await pixels(page, "train"));
    c.ok(back === 0, `${r.name}: a second click draws it again (${back} pixels differ)`);
    if (r.samples.length) c.ok((await samplePanel(page)).some((b) => b.name === r.name), `${r.name}: its samples come back`);
  }

  // Following the steps: hovering the val chart marks, in every run's block, the sample nearest
  // the cursor's step (the fixture runs share their sample steps): at a sample's own step, and
  // three quarters of the way from the middle sample to the last (the edges are the plot's).
  for (const r of withSamples) {
    const [mid, last] = [r.samples[r.samples.length >> 1].step, r.samples[r.samples.length - 1].step];
    for (const [at, want] of [[mid, mid], [mid + 0.75 * (last - mid), last]]) {
      const pos = await page.evaluate(([name, step]) => {
        const u = window.speedrunReport.charts.val;
        const si = u.series.findIndex((s) => s.label === name);
        const ys = u.data[si].filter((v) => v != null);
        const box = u.over.getBoundingClientRect();
        return { x: box.left + u.valToPos(step, "x"), y: box.top + u.valToPos(ys[ys.length >> 1], "y") };
      }, [r.name, at]);
      await page.mouse.move(pos.x, pos.y);
      const marked = (await samplePanel(page)).map((b) => b.rows.filter((x) => x.at).map((x) => x.head.split(" ")[1]));
      c.ok(marked.length > 0 && marked.every((m) => m.length === 1 && m[0] === String(want)),
        `hovering ${r.name}'s chart at step ${at} marks the step-${want} sample in every block (got ${JSON.stringify(marked)})`);
    }
  }
  await page.mouse.move(5, 5);

  // Hover read-out at the first run's middle val point (the last sits on the plot's edge).
  const r0 = runs.find((r) => r.val.length > 0);
  const at = await page.evaluate((name) => {
    const u = window.speedrunReport.charts.val;
    const si = u.series.findIndex((s) => s.label === name);
    const have = u.data[si].map((v, i) => (v == null ? -1 : i)).filter((i) => i >= 0);
    const j = have[have.length >> 1];
    const box = u.over.getBoundingClientRect();
    return { x: box.left + u.valToPos(u.data[0][j], "x"), y: box.top + u.valToPos(u.data[si][j], "y") };
  }, r0.name);
  await page.mouse.move(at.x, at.y);
  const tip = await page.textContent("#tip");
  const mid = r0.val[r0.val.length >> 1].val_loss.toFixed(4);
  c.ok(tip.includes(r0.name + ": " + mid), `hovering ${r0.name}'s middle point reads "${mid}" (got "${tip.slice(0, 120)}")`);
  await page.mouse.move(5, 5);

  // The x-axis switch.
  const xOf = (kind) => page.evaluate((k) => {
    const u = window.speedrunReport.charts.val;
    return { max: Math.max(...u.data[0]), label: u.axes[0].label, ok: k };
  }, kind);
  await page.check('input[name="x"][value="tokens"]');
  let x = await xOf("tokens");
  const maxTok = Math.max(...runs.flatMap((r) => r.val.map((v) => v.tokens)));
  const tokDiv = maxTok >= 1e9 ? 1e9 : maxTok >= 1e6 ? 1e6 : maxTok >= 1e4 ? 1e3 : 1;
  c.ok(/tokens/.test(x.label) && Math.abs(x.max - maxTok / tokDiv) < 1e-9, `x = tokens: axis "${x.label}", max ${x.max} = ${maxTok / tokDiv}`);
  await page.check('input[name="x"][value="time"]');
  x = await xOf("time");
  const maxMs = Math.max(...runs.flatMap((r) => r.val.map((v) => v.train_time_ms)));
  const msDiv = maxMs > 600000 ? 60000 : 1000;
  // The page carries train times rounded to 0.1 ms.
  c.ok(/train time/.test(x.label) && Math.abs(x.max - maxMs / msDiv) <= 0.05 / msDiv + 1e-9, `x = train time: axis "${x.label}", max ${x.max} = ${maxMs / msDiv}`);
  await page.check('input[name="x"][value="step"]');
  x = await xOf("step");
  c.ok(x.label === "step" && x.max === Math.max(...runs.flatMap((r) => r.val.map((v) => v.step))), "x back to step");

  // log y.
  const linear = await pixels(page, "val");
  await page.check("#log-y");
  const distr = await page.evaluate(() => window.speedrunReport.charts.val.scales.y.distr);
  c.ok(distr === 3 && diff(linear, await pixels(page, "val")) > 100, "log y puts the val chart on a log scale");
  await page.uncheck("#log-y");
  c.ok(await page.evaluate(() => window.speedrunReport.charts.val.scales.y.distr) === 1, "log y off again");

  // Drag to zoom, double-click to reset.
  const box = await page.evaluate(() => { const b = window.speedrunReport.charts.val.over.getBoundingClientRect(); return { x: b.left, y: b.top, w: b.width, h: b.height }; });
  const full = await page.evaluate(() => { const s = window.speedrunReport.charts.val.scales.x; return [s.min, s.max]; });
  await page.mouse.move(box.x + box.w * 0.3, box.y + box.h / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.w * 0.6, box.y + box.h / 2, { steps: 5 });
  await page.mouse.up();
  const zoomed = await page.evaluate(() => { const s = window.speedrunReport.charts.val.scales.x; return [s.min, s.max]; });
  c.ok(zoomed[1] - zoomed[0] < 0.5 * (full[1] - full[0]), `drag zooms x (${full} -> ${zoomed})`);
  await page.mouse.dblclick(box.x + box.w / 2, box.y + box.h / 2);
  const reset = await page.evaluate(() => { const s = window.speedrunReport.charts.val.scales.x; return [s.min, s.max]; });
  c.ok(Math.abs(reset[0] - full[0]) < 1e-9 && Math.abs(reset[1] - full[1]) < 1e-9, "double-click resets the zoom");

  // Sort the runs table by final val loss.
  const col = await page.$$eval("#runs th", (ths) => ths.findIndex((t) => t.textContent.startsWith("final val loss")));
  const th = page.locator("#runs th").nth(col);
  await th.click();
  const sorted = await page.$$eval("#runs tbody tr", (trs, i) => trs.map((tr) => parseFloat(tr.cells[i].textContent)), col);
  // The table shows 4 decimals.
  const want = runs.map((r) => parseFloat(r.val[r.val.length - 1].val_loss.toFixed(4))).sort((a, b) => a - b);
  c.ok(JSON.stringify(sorted) === JSON.stringify(want), `sorting by final val loss: ${sorted} = ${want}`);
  await th.click();
  const desc = await page.$$eval("#runs tbody tr", (trs, i) => trs.map((tr) => parseFloat(tr.cells[i].textContent)), col);
  c.ok(JSON.stringify(desc) === JSON.stringify([...want].reverse()), "a second click sorts descending");

  // Back to seeds as mean ± sd: every run is in exactly one legend entry.
  if (canGroup) await page.check("#grouped");
  const covered = await page.evaluate(() => window.speedrunReport.entries().flatMap((e) => e.runs));
  c.ok(covered.length === runs.length && new Set(covered).size === runs.length, "grouped: each run in one legend entry");

  c.ok(errors.length === 0, "no page errors: " + errors.join("; "));
  c.ok(requests.length === 0, "no network requests: " + requests.join(", "));
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await page.close();
}

// Broken copies of the page; each must fail the checks.
const MUTANTS = [
  ["a run's val data dropped", (h) => h.replace(/("val":\{"s":\[)[^\]]*\]/, "$1]")],
  ["the legend toggle does nothing", (h) => h.replace("u.setSeries(si, { show: !hidden(key) })", "void si")],
  ["the x-axis switch is ignored", (h) => h.replace('r.onchange = () => { state.x = r.value; render(); };', "")],
  ["log y is ignored", (h) => h.replace("distr: logY ? 3 : 1", "distr: 1")],
  ["a run's samples dropped", (h) => h.replace(/("samples":\[\[)[^\]]*\]/, "$1]")],
  ["a hidden run's samples stay", (h) => h.replace("if (hidden(e.key)) continue;", "")],
  ["the samples do not follow the cursor", (h) => h.replace("    follow(x);\n", "\n")],
  ["samples written as markup", (h) => h.replace("b.textContent = smp.p;", "b.innerHTML = smp.p;").replace("document.createTextNode(smp.x)", "Object.assign(document.createElement(\"span\"), { innerHTML: smp.x })")],
];

const a = args();
const runs = a.runs.map(runRecords);
// launch() gives the browser a fresh temporary profile of its own.
const browser = await chromium.launch({ executablePath: a.browser, args: launchArgs });
let failed = 0, passed = 0;
try {
  const c = new Checks(false);
  await check(browser, a.html, runs, c, a.screenshot).catch((e) => c.ok(false, "the checks ran: " + e.message.split("\n")[0]));
  console.log(`page: ${c.passed} checks passed, ${c.failed.length} failed`);
  passed += c.passed > 0 && c.failed.length === 0 ? 1 : 0;
  failed += c.failed.length ? 1 : 0;
  if (a.mutants) {
    const html = fs.readFileSync(a.html, "utf8");
    for (const [what, mutate] of MUTANTS) {
      const broken = mutate(html);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mutant-"));
      const file = path.join(dir, "report.html");
      fs.writeFileSync(file, broken);
      const m = new Checks(true);
      if (broken === html) m.ok(false, "mutation did not apply");
      // A check that cannot even run on the broken page fails too.
      else await check(browser, file, runs, m, null).catch((e) => m.ok(false, e.message.split("\n")[0]));
      fs.rmSync(dir, { recursive: true, force: true });
      const caught = m.failed.length > 0;
      console.log(`mutant "${what}": ${caught ? "caught (" + m.failed[0] + ")" : "NOT caught"}`);
      if (caught && broken !== html) passed++; else failed++;
    }
  }
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
