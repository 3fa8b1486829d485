// The interactive part of `speedrun compare --html`: charts drawn with uPlot (embedded above this
// script) from the JSON in #report-data, a legend whose entries toggle runs, the x-axis switch,
// log-y, seeds as mean ± sd or one line each, a hover read-out, each run's samples step by step
// and sortable tables.
// Everything is in this one file; nothing is fetched.
(() => {
  "use strict";
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const KEY = "speedrun-report:" + location.pathname;
  const state = Object.assign(
    { x: D.x, logY: D.logY, grouped: true, hidden: [], scalar: null, paused: false },
    (() => { try { return JSON.parse(sessionStorage.getItem(KEY)) || {}; } catch (e) { return {}; } })()
  );
  const save = () => { try { sessionStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { /* private mode */ } };
  const charts = {};
  const $ = (id) => document.getElementById(id);
  $("train-title").textContent = "train loss: " + D.trainBasis;

  // What the charts draw: seed groups (n >= 2) as mean ± sd when grouped, every other run alone.
  function entries() {
    const out = [];
    const inGroup = new Set();
    if (state.grouped) {
      D.groups.forEach((g, i) => {
        g.runs.forEach((r) => inGroup.add(r));
        out.push(Object.assign({ key: "g" + i, group: true }, g));
      });
    }
    D.runs.forEach((r, i) => {
      if (!inGroup.has(i)) out.push(Object.assign({ key: "r" + i, group: false, runs: [i] }, r));
    });
    return out;
  }
  const hidden = (key) => state.hidden.includes(key);

  // x in raw units (steps, tokens, ms) of point i of a curve; null when the run does not say.
  const rawX = (c, i) => (state.x === "step" ? c.s[i] : state.x === "tokens" ? c.t[i] : c.ms[i]);
  function xUnit(max) {
    if (state.x === "step") return [1, "step"];
    if (state.x === "tokens") {
      if (max >= 1e9) return [1e9, "tokens (billions)"];
      if (max >= 1e6) return [1e6, "tokens (millions)"];
      if (max >= 1e4) return [1e3, "tokens (thousands)"];
      return [1, "tokens"];
    }
    return max > 600000 ? [60000, "train time (min)"] : [1000, "train time (s)"];
  }
  let unit = [1, "step"];
  function setUnit() {
    let max = 0;
    for (const e of entries()) {
      for (const c of [e.val, e.train]) {
        for (let i = 0; i < c.s.length; i++) max = Math.max(max, rawX(c, i) || 0);
      }
    }
    unit = xUnit(max);
  }
  // [xs, ys] of a curve's field (y, lo, hi) in display units, points without an x left out.
  function table(c, field) {
    const xs = [], ys = [];
    for (let i = 0; i < c.s.length; i++) {
      const x = rawX(c, i);
      if (x == null || c[field][i] == null) continue;
      xs.push(x / unit[0]);
      ys.push(c[field][i]);
    }
    return [xs, ys];
  }

  function fmtX(x) {
    if (state.x === "step") return "step " + Math.round(x);
    return x.toPrecision(4) + " " + unit[1].replace(/^.*\((.*)\)$/, "$1");
  }

  // One chart. `kind` is "val", "train" or "scalar".
  function build(kind, el) {
    const tables = [], series = [{}], bands = [], owner = [null], main = [null];
    const add = (e, t, opts, isMain) => {
      tables.push(t);
      series.push(Object.assign({ label: e.label, spanGaps: true, show: !hidden(e.key) }, opts));
      owner.push(e.key);
      main.push(isMain ? { t, color: opts.stroke } : null);
      return series.length - 1;
    };
    const shown = entries();
    for (const e of shown) {
      const dots = { show: kind === "val" && e.val.s.length <= 60, size: 5 };
      if (kind === "val" || kind === "train") {
        const c = kind === "val" ? e.val : e.ema;
        if (kind === "train") add(e, table(e.train, "y"), { stroke: e.color + "38", width: 1, points: { show: false } }, false);
        add(e, table(c, "y"), { stroke: e.color, width: 2, points: dots }, true);
        if (e.group && c.lo) {
          const hi = add(e, table(c, "hi"), { stroke: "transparent", width: 0, points: { show: false } }, false);
          const lo = add(e, table(c, "lo"), { stroke: "transparent", width: 0, points: { show: false } }, false);
          bands.push({ series: [hi, lo], fill: e.color + "30" });
        }
      } else {
        const tag = state.scalar;
        e.runs.forEach((ri) => {
          const sc = D.scalars[tag] && D.scalars[tag][ri];
          if (!sc) return;
          const r = D.runs[ri];
          const at = new Map(r.train.s.map((s, i) => [s, i]));
          const c = { s: sc.s, t: sc.s.map((s) => (at.has(s) ? r.train.t[at.get(s)] : null)),
                      ms: sc.s.map((s) => (at.has(s) ? r.train.ms[at.get(s)] : null)), y: sc.y };
          const label = e.runs.length > 1 ? D.runs[ri].label : e.label;
          add({ key: e.key, label }, table(c, "y"), { stroke: D.runs[ri].color, width: 2, points: { show: sc.s.length <= 60, size: 4 } }, true);
        });
      }
    }
    el.textContent = "";
    if (tables.length === 0 || tables.every((t) => t[0].length === 0)) {
      el.innerHTML = '<div class="empty">no data yet</div>';
      return null;
    }
    const data = uPlot.join(tables);
    const yLabel = kind === "val" ? "val loss" : kind === "train" ? "train loss" : state.scalar;
    const logY = state.logY && kind !== "scalar";
    const u = new uPlot({
      width: Math.max(300, el.clientWidth),
      height: 330,
      scales: { x: { time: false }, y: { distr: logY ? 3 : 1 } },
      series,
      bands,
      legend: { show: false },
      cursor: { sync: { key: "speedrun" }, points: { size: 7 } },
      axes: [
        Object.assign({ label: unit[1], stroke: "#333", grid: { stroke: "#eee" }, values: tickLabels },
          state.x === "step" ? { incrs: STEP_INCRS } : {}),
        { label: yLabel + (logY ? " (log scale)" : ""), stroke: "#333", grid: { stroke: "#eee" }, size: 64, values: tickLabels },
      ],
      hooks: {
        draw: [(u) => { if (kind === "val" && D.target != null) targetLine(u); }],
        setCursor: [(u) => tip(u, main)],
      },
    }, data, el);
    u.owner = owner;
    u.kind = kind;
    el.onmouseenter = () => { active = kind; };
    el.onmouseleave = () => { active = null; $("tip").style.display = "none"; };
    return u;
  }

  // Tick labels with the decimals their spacing needs, so that no two read alike; steps are
  // whole numbers.
  const STEP_INCRS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6].map((p) => m * p)).sort((a, b) => a - b);
  function tickLabels(u, splits, axis, space, incr) {
    const d = Math.max(0, -Math.floor(Math.log10(incr) + 1e-9));
    return splits.map((v) => (v == null ? "" : Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-4 && v !== 0) ? v.toExponential(1) : v.toFixed(Math.min(d, 8))));
  }

  function targetLine(u) {
    const y = Math.round(u.valToPos(D.target, "y", true));
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "rgba(0,0,0,.75)";
    ctx.lineWidth = 2 * devicePixelRatio;
    ctx.setLineDash([9 * devicePixelRatio, 6 * devicePixelRatio]);
    ctx.beginPath();
    ctx.moveTo(u.bbox.left, y);
    ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke();
    ctx.restore();
  }

  // The hover read-out: for every shown series, its point nearest the cursor's x. Only the chart
  // under the mouse writes it (the others follow its cursor through the sync).
  let active = null;
  function tip(u, main) {
    if (u.kind !== active) return;
    const t = $("tip");
    const { left, top } = u.cursor;
    if (left == null || left < 0) { t.style.display = "none"; return; }
    const x = u.posToVal(left, "x");
    follow(x);
    const rows = [];
    main.forEach((m, i) => {
      if (!m || !u.series[i].show) return;
      const [xs, ys] = m.t;
      if (!xs.length) return;
      let lo = 0, hi = xs.length - 1;
      while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (xs[mid] < x) lo = mid; else hi = mid; }
      const j = Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
      rows.push({ label: u.series[i].label, color: m.color, y: ys[j], x: xs[j] });
    });
    if (!rows.length) { t.style.display = "none"; return; }
    rows.sort((a, b) => a.y - b.y);
    t.innerHTML = rows.map((r) => '<div class="row"><span class="sw" style="background:' + r.color + '"></span>' +
      esc(r.label) + ": <b>" + fmtY(r.y) + "</b> <span>(" + fmtX(r.x) + ")</span></div>").join("");
    const box = u.over.getBoundingClientRect();
    t.style.display = "block";
    const px = box.left + left + 16, py = box.top + top + 12;
    t.style.left = Math.min(px, window.innerWidth - t.offsetWidth - 8) + "px";
    t.style.top = Math.min(py, window.innerHeight - t.offsetHeight - 8) + "px";
  }
  const fmtY = (y) => (Math.abs(y) >= 1e4 || (Math.abs(y) < 1e-3 && y !== 0) ? y.toExponential(3) : y.toFixed(4));
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

  function legend() {
    const el = $("legend");
    el.textContent = "";
    for (const e of entries()) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.key = e.key;
      b.className = hidden(e.key) ? "off" : "";
      const sw = document.createElement("span");
      sw.className = "sw";
      // A group: its mean line over its band.
      const band = e.color + "30";
      sw.style.background = e.group
        ? "linear-gradient(" + band + " 35%, " + e.color + " 35% 65%, " + band + " 65%)"
        : "linear-gradient(transparent 35%, " + e.color + " 35% 65%, transparent 65%)";
      b.append(sw, document.createTextNode(e.label + (e.val.s.length + e.train.s.length === 0 ? " (no data yet)" : "")));
      b.title = "click to hide or show";
      b.onclick = () => toggle(e.key, b);
      el.append(b);
    }
    if (D.target != null) {
      const n = document.createElement("div");
      n.className = "note";
      n.textContent = "- - -  target " + D.target;
      el.append(n);
    }
    const n = document.createElement("div");
    n.className = "note";
    n.textContent = "train loss: " + D.trainBasis + "; EMA " + D.smooth + ", raw faint; drag to zoom, double-click to reset";
    el.append(n);
  }

  // The samples of every shown run: one block per run, one row per sample (its step, the val loss
  // logged at that step, the prompt in bold and the continuation).
  function samples() {
    const box = $("samples-box"), el = $("samples");
    el.textContent = "";
    const any = D.samples.some((s) => s.length > 0);
    box.hidden = !any;
    if (!any) return;
    for (const e of entries()) {
      if (hidden(e.key)) continue;
      for (const ri of e.runs) {
        const list = D.samples[ri];
        if (!list.length) continue;
        const r = D.runs[ri];
        const block = document.createElement("div");
        block.className = "run-samples";
        block.dataset.run = ri;
        const h = document.createElement("div");
        h.className = "run-name";
        h.innerHTML = '<span class="sw" style="background:' + r.color + '"></span>' + esc(r.label);
        block.append(h);
        for (const smp of list) {
          const row = document.createElement("div");
          row.className = "sample";
          row.dataset.step = smp.s;
          const vi = r.val.s.indexOf(smp.s);
          const loss = vi >= 0 ? " · val " + fmtY(r.val.y[vi]) : "";
          const head = document.createElement("span");
          head.className = "at-step";
          head.textContent = "step " + smp.s + loss;
          const text = document.createElement("span");
          text.className = "text";
          const b = document.createElement("b");
          b.textContent = smp.p;
          text.append(b, document.createTextNode(smp.x));
          row.append(head, text);
          block.append(row);
        }
        el.append(block);
      }
    }
  }

  // Mark, in each run's block, the sample nearest the cursor's x (in the chart's units): moving
  // along a curve walks through what the run wrote.
  function follow(x) {
    for (const block of document.querySelectorAll("#samples .run-samples")) {
      const r = D.runs[+block.dataset.run];
      let best = null, bestD = Infinity;
      for (const row of block.querySelectorAll(".sample")) {
        const i = r.val.s.indexOf(+row.dataset.step);
        const rx = i >= 0 ? rawX(r.val, i) : (state.x === "step" ? +row.dataset.step : null);
        if (rx == null) continue;
        const d = Math.abs(rx / unit[0] - x);
        if (d < bestD) { bestD = d; best = row; }
      }
      for (const row of block.querySelectorAll(".sample")) row.classList.toggle("at", row === best);
      if (best) block.scrollTop = best.offsetTop - block.clientHeight / 3;
    }
  }

  function toggle(key, button) {
    const i = state.hidden.indexOf(key);
    if (i >= 0) state.hidden.splice(i, 1); else state.hidden.push(key);
    button.className = hidden(key) ? "off" : "";
    for (const u of Object.values(charts)) {
      if (!u) continue;
      u.owner.forEach((k, si) => { if (k === key) u.setSeries(si, { show: !hidden(key) }); });
    }
    samples();
    save();
  }

  function render() {
    setUnit();
    for (const u of Object.values(charts)) if (u) u.destroy();
    charts.val = build("val", $("chart-val"));
    charts.train = build("train", $("chart-train"));
    charts.scalar = state.scalar && D.scalars[state.scalar] ? build("scalar", $("chart-scalar")) : null;
    legend();
    samples();
    save();
  }

  function controls() {
    for (const r of document.querySelectorAll('input[name="x"]')) {
      r.checked = r.value === state.x;
      r.onchange = () => { state.x = r.value; render(); };
    }
    const ly = $("log-y");
    ly.checked = state.logY;
    ly.onchange = () => { state.logY = ly.checked; render(); };
    const g = $("grouped");
    g.checked = state.grouped;
    g.disabled = D.groups.length === 0;
    g.onchange = () => { state.grouped = g.checked; render(); };
    const sel = $("scalar");
    const tags = Object.keys(D.scalars);
    sel.append(...["(none)"].concat(tags).map((t) => new Option(t, t === "(none)" ? "" : t)));
    // The first choice: the diagnostics' median gradient ratio when the runs logged it (the
    // quantity docs/diagnostics.md is about), else a learning rate.
    const first = tags.includes("diag/median/nuc_fro_ratio") ? "diag/median/nuc_fro_ratio" : tags.find((t) => t.startsWith("lr/"));
    if (!tags.includes(state.scalar)) state.scalar = first || tags[0] || null;
    sel.value = state.scalar || "";
    sel.disabled = tags.length === 0;
    sel.onchange = () => { state.scalar = sel.value || null; render(); };
    if (D.refresh) {
      const p = $("pause");
      p.checked = state.paused;
      p.onchange = () => { state.paused = p.checked; save(); };
      setInterval(() => { if (!state.paused) location.reload(); }, D.refresh * 1000);
    }
  }

  function sortable() {
    for (const tbl of document.querySelectorAll("table.sortable")) {
      const ths = tbl.querySelectorAll("th");
      ths.forEach((th, col) => {
        th.title = "click to sort";
        th.onclick = () => {
          const asc = th.getAttribute("aria-sort") !== "ascending";
          ths.forEach((o) => o.removeAttribute("aria-sort"));
          th.setAttribute("aria-sort", asc ? "ascending" : "descending");
          const body = tbl.tBodies[0];
          const key = (tr) => {
            const s = tr.cells[col].textContent.trim();
            const v = parseFloat(s.replace(/ ±.*$/, ""));
            return isNaN(v) || !/^-?[\d.]/.test(s) ? [1, s] : [0, v];
          };
          const rows = Array.from(body.rows);
          rows.sort((a, b) => {
            const [ka, va] = key(a), [kb, vb] = key(b);
            // Numbers first, text ("not reached", "-") after them in either direction.
            if (ka !== kb) return ka - kb;
            const c = ka ? String(va).localeCompare(vb) : va - vb;
            return asc ? c : -c;
          });
          body.append(...rows);
        };
      });
    }
  }

  controls();
  sortable();
  render();
  let w = window.innerWidth;
  window.addEventListener("resize", () => { if (Math.abs(window.innerWidth - w) > 20) { w = window.innerWidth; render(); } });
  window.speedrunReport = { charts, state, entries, render, follow };
})();
