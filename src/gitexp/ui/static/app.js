// gitexp's web view: the runs table, compare (curves, parallel coordinates), a run's page.
// Every value from a run reaches the page through textContent / createElement: never
// innerHTML. Served by `git exp ui` (data from /api/...), or frozen into one HTML file by
// `git exp report` (data in <script type="application/json" id="gitexp-data">).
"use strict";
(function () {
  const frozenNode = document.getElementById("gitexp-data");
  const FROZEN = frozenNode ? JSON.parse(frozenNode.textContent) : null;
  const tokenMeta = document.querySelector('meta[name="gitexp-token"]');
  const TOKEN = tokenMeta ? tokenMeta.getAttribute("content") : "";
  const ROW = 28, PAGE = 200;
  const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#17becf", "#7f7f7f", "#bcbd22"];
  const main = document.getElementById("main");

  // -- DOM helpers --------------------------------------------------------------------------
  function el(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k === "cls") node.className = v;
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    node.append(...nodesOf(kids));
    return node;
  }
  function nodesOf(kids) {
    return kids.flat(Infinity).filter(k => k !== null && k !== undefined && k !== false)
      .map(k => k instanceof Node ? k : document.createTextNode(String(k)));
  }
  // replaceChildren, skipping nothing-values and flattening lists, as `el` does
  function fill(node, ...kids) { node.replaceChildren(...nodesOf(kids)); return node; }
  function colour(i) { return i < COLOURS.length ? COLOURS[i] : `hsl(${(i * 47) % 360} 65% 45%)`; }
  function when(ts) {
    if (typeof ts !== "number") return "";
    const d = new Date(ts * 1000);
    return isNaN(d) ? "" : d.toISOString().replace("T", " ").slice(0, 16);
  }
  function duration(s) {
    if (typeof s !== "number" || !isFinite(s)) return "";
    const n = Math.floor(s);
    return n < 60 ? s.toFixed(1) + "s" : n < 3600 ? `${Math.floor(n / 60)}m${String(n % 60).padStart(2, "0")}s`
      : `${Math.floor(n / 3600)}h${String(Math.floor(n % 3600 / 60)).padStart(2, "0")}m`;
  }
  function show(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4).replace(/\.?0+(e|$)/, "$1");
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }
  function badge(status) { return el("span", { cls: `badge st-${status}`, text: status }); }
  function runLink(id) { return el("a", { href: "#/run/" + encodeURIComponent(id), cls: "mono", text: id }); }
  function failure(err) {
    return el("div", { cls: "error" }, "error: " + err.message, err.hint ? "\nhint: " + err.hint : "");
  }

  // -- data: the server's API, or the frozen copy ---------------------------------------------
  async function get(path, params) {
    const qs = new URLSearchParams(params || {}).toString();
    const res = await fetch(path + (qs ? "?" + qs : ""), { headers: { Accept: "application/json" } });
    const body = await res.json();
    if (!res.ok) { const e = new Error(body.error || res.statusText); e.hint = body.hint; throw e; }
    return body;
  }
  async function post(path) {
    const res = await fetch(path, { method: "POST", headers: { "X-Gitexp-Token": TOKEN } });
    const body = await res.json();
    if (!res.ok) { const e = new Error(body.error || res.statusText); e.hint = body.hint; throw e; }
    return body;
  }
  function frozenSorted(sort) {
    const rows = FROZEN.table.rows.slice();
    const keys = (sort || "").split(",").filter(Boolean).map(k => [k.replace(/^[-+]/, ""), k.startsWith("-")]);
    const value = (r, name) => {
      if (name.startsWith("metrics.")) return r.metrics[name.slice(8)];
      if (name.startsWith("params.")) return r.params[name.slice(7)];
      return r[name];
    };
    for (const [name, desc] of keys.reverse()) {  // as `ls --sort`: missing values last
      const keyed = rows.map((r, i) => [value(r, name), i, r]);
      const present = keyed.filter(k => k[0] !== null && k[0] !== undefined);
      const rank = v => typeof v === "number" ? [0, v] : [1, String(v)];
      present.sort((a, b) => {
        const x = rank(a[0]), y = rank(b[0]);
        const c = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
        return (desc ? -c : c) || a[1] - b[1];
      });
      rows.splice(0, rows.length, ...present.map(k => k[2]),
        ...keyed.filter(k => k[0] === null || k[0] === undefined).map(k => k[2]));
    }
    return rows;
  }
  const api = {
    async runs(q, offset, limit) {
      if (!FROZEN) return get("/api/runs", { where: q.where || "", sort: q.sort || "", offset, limit });
      const rows = frozenSorted(q.sort);
      return { ...FROZEN.table, total: rows.length, offset, rows: rows.slice(offset, offset + limit), live: false };
    },
    async series(ids) {
      if (!FROZEN) return get("/api/series", { ids: ids.join(",") });
      const out = { runs: {}, series: {} };
      for (const id of ids) if (FROZEN.series[id]) {
        out.series[id] = FROZEN.series[id];
        out.runs[id] = FROZEN.table.rows.find(r => r.id === id);
      }
      return out;
    },
    async parallel(q, metric) {
      if (!FROZEN) return get("/api/parallel", { where: q.where || "", metric: metric || "" });
      return FROZEN.parallel[metric] || FROZEN.parallel[Object.keys(FROZEN.parallel)[0]] || { axes: [], rows: [] };
    },
    async run(id) {
      if (!FROZEN) return get("/api/run/" + encodeURIComponent(id));
      const r = FROZEN.runs[id];
      if (!r) throw new Error(`run ${id} is not in this report`);
      return r;
    },
    async log(id, offset) {
      if (!FROZEN) return get("/api/log/" + encodeURIComponent(id), { offset });
      return { text: FROZEN.runs[id] ? FROZEN.runs[id].log || "" : "", live: false, offset: 0, cut: true };
    },
    async diff(id, against) {
      if (FROZEN) throw new Error("the code diff is in the live view: git exp ui, or git exp diff " + id);
      return get("/api/diff/" + encodeURIComponent(id), against ? { against } : {});
    },
    cancel(id) { return post("/api/cancel/" + encodeURIComponent(id)); },
  };

  // -- state kept across pages ------------------------------------------------------------------
  const state = {
    where: "", sort: "", selected: new Set(), hideSame: false,
    hidden: new Set(JSON.parse(localStorage.getItem("gitexp.hidden") || "[]")),
  };
  let stopPage = () => {};  // the current page's timers and listeners
  let shown = 0;  // which page is shown: an answer for a page left meanwhile is dropped
  function stale(mine) { return mine !== shown; }

  // -- the runs table ---------------------------------------------------------------------------
  const FIXED = [
    { key: "id", label: "run", width: 240, cell: r => runLink(r.id) },
    { key: "status", label: "status", width: 92, cell: r => badge(r.status) },
    { key: "target", label: "target", width: 90 },
    { key: "launched_at", label: "launched", width: 130, cell: r => when(r.launched_at) },
    { key: "duration", label: "duration", width: 74, num: true, cell: r => duration(r.duration) },
    { key: "command", label: "command", width: 280, cls: "mono" },
  ];

  function columnsOf(meta) {
    const same = new Set(meta.same || []);
    const cols = FIXED.slice();
    for (const p of meta.params) cols.push({ key: "params." + p, label: p, width: 96, num: true, cell: r => show(r.params[p]) });
    for (const m of meta.metrics) cols.push({ key: "metrics." + m, label: m, width: 96, num: true, cell: r => show(r.metrics[m]) });
    return cols.filter(c => c.key === "id" || (!state.hidden.has(c.key) && !(state.hideSame && same.has(c.key))));
  }

  async function tablePage() {
    document.title = FROZEN ? FROZEN.title : "gitexp runs";
    const filter = el("input", { type: "text", id: "where", placeholder: "filter: lr<0.01 and status==succeeded", value: state.where });
    const count = el("span", { cls: "muted", id: "count" });
    const errors = el("div", { id: "table-error" });
    const hideSame = el("input", { type: "checkbox", id: "hide-same" });
    hideSame.checked = state.hideSame;
    const pick = el("div", { cls: "pick" });
    const compare = el("button", { id: "compare", on: { click: () => { location.hash = compareHash(); } } });
    const viewport = el("div", { cls: "viewport" });
    const spacer = el("div", { cls: "spacer" });
    const head = el("div", { cls: "head" });
    viewport.append(spacer);
    const grid = el("div", { cls: "grid" }, head, viewport);
    const apply = () => { state.where = filter.value.trim(); reload(); };
    filter.addEventListener("keydown", e => { if (e.key === "Enter") apply(); });
    hideSame.addEventListener("change", () => { state.hideSame = hideSame.checked; draw(true); });
    fill(main, 
      el("div", { cls: "toolbar" },
        FROZEN ? el("span", { cls: "muted", text: FROZEN.subtitle }) : [filter, el("button", { on: { click: apply } }, "Filter")],
        el("details", { cls: "columns" }, el("summary", {}, "Columns"), pick),
        el("label", {}, hideSame, " hide equal columns"), compare, count),
      errors, grid);

    let meta = null, pages = new Map(), total = 0, live = false, cols = [], generation = 0;
    const page = shown;
    const updateCompare = () => {
      compare.textContent = `Compare selected (${state.selected.size})`;
      compare.disabled = state.selected.size < 1;
    };
    updateCompare();

    function headCells() {
      const [sortKey, desc] = state.sort ? [state.sort.replace(/^-/, ""), state.sort.startsWith("-")] : ["", false];
      fill(head, el("div", { cls: "cell", text: "" }), ...cols.map(c => {
        const cell = el("div", { cls: "cell" + (c.num ? " num" : "") + (c.key === sortKey ? (desc ? " sorted-desc" : " sorted-asc") : ""),
          title: c.key, text: c.label, "data-key": c.key });
        cell.style.width = c.width + "px";
        cell.addEventListener("click", () => {
          state.sort = state.sort === c.key ? "-" + c.key : state.sort === "-" + c.key ? "" : c.key;
          reload();
        });
        return cell;
      }));
      head.firstChild.style.width = "28px";
    }
    function pickCells() {
      const all = [...FIXED.slice(1).map(c => [c.key, c.label]), ...meta.params.map(p => ["params." + p, "param " + p]),
        ...meta.metrics.map(m => ["metrics." + m, "metric " + m])];
      fill(pick, ...all.map(([key, label]) => {
        const box = el("input", { type: "checkbox", "data-key": key });
        box.checked = !state.hidden.has(key);
        box.addEventListener("change", () => {
          if (box.checked) state.hidden.delete(key); else state.hidden.add(key);
          localStorage.setItem("gitexp.hidden", JSON.stringify([...state.hidden]));
          draw(true);
        });
        return el("label", {}, box, " " + label);
      }));
    }
    function rowNode(r, i) {
      const box = el("input", { type: "checkbox" });
      box.checked = state.selected.has(r.id);
      box.addEventListener("change", () => {
        if (box.checked) state.selected.add(r.id); else state.selected.delete(r.id);
        node.classList.toggle("sel", box.checked);
        updateCompare();
      });
      const node = el("div", { cls: "row" + (box.checked ? " sel" : ""), "data-id": r.id });
      node.style.top = i * ROW + "px";
      const first = el("div", { cls: "cell" }, box);
      first.style.width = "28px";
      node.append(first);
      for (const c of cols) {
        const v = c.cell ? c.cell(r) : show(r[c.key]);
        const cell = el("div", { cls: "cell" + (c.num ? " num" : "") + (c.cls ? " " + c.cls : "") }, v);
        if (typeof v === "string") cell.title = v;
        cell.style.width = c.width + "px";
        node.append(cell);
      }
      return node;
    }
    function draw(columnsChanged) {
      if (!meta) return;
      if (columnsChanged) { cols = columnsOf(meta); headCells(); }
      const width = 28 + cols.reduce((s, c) => s + c.width, 0);
      spacer.style.height = total * ROW + "px";
      spacer.style.width = width + "px";
      const first = Math.max(0, Math.floor(viewport.scrollTop / ROW) - 5);
      const last = Math.min(total, Math.ceil((viewport.scrollTop + viewport.clientHeight) / ROW) + 5);
      const nodes = [];
      for (let i = first; i < last; i++) {
        const page = pages.get(Math.floor(i / PAGE));
        if (!page) { fetchPage(Math.floor(i / PAGE)); continue; }
        const r = page[i % PAGE];
        if (r) nodes.push(rowNode(r, i));
      }
      fill(spacer, ...nodes);
      for (const n of nodes) n.style.width = width + "px";
    }
    const pending = new Set();
    async function fetchPage(n, again) {
      if ((pending.has(n) || pages.has(n)) && !again) return;
      pending.add(n);
      const mine = generation;
      try {
        const body = await api.runs(state, n * PAGE, PAGE);
        if (mine !== generation || stale(page)) return;
        const first = meta === null;
        if (first) fill(errors);
        meta = body; total = body.total; live = body.live;
        pages.set(n, body.rows);
        count.textContent = `${total} run(s)` + (live ? " · live" : "");
        if (!total) fill(errors, el("p", { cls: "muted", text: state.where ? "No run matches the filter."
          : "No runs yet: git exp run -- CMD starts one." }));
        if (first) pickCells();
        draw(first);
        if (first && n === 0) {
          // the first full paint of the table, for benchmarks/bench_ui.py
          requestAnimationFrame(() => { window.gitexpPainted = performance.now(); });
        }
      } catch (err) {
        if (mine === generation) { fill(errors, failure(err)); count.textContent = ""; fill(spacer); }
      } finally { pending.delete(n); }
    }
    function reload() {
      generation++; meta = null; pages = new Map(); viewport.scrollTop = 0;
      fetchPage(0);
    }
    viewport.addEventListener("scroll", () => {
      head.scrollLeft = viewport.scrollLeft;
      requestAnimationFrame(() => draw(false));
    });
    reload();
    // live runs: the visible pages are asked again, so their status moves by itself
    const timer = setInterval(() => {
      if (!live || FROZEN) return;
      const first = Math.floor(viewport.scrollTop / ROW / PAGE);
      fetchPage(first, true);
    }, 2000);
    stopPage = () => clearInterval(timer);
  }

  function compareHash() {
    const q = new URLSearchParams({ ids: [...state.selected].join(",") });
    if (state.where) q.set("where", state.where);
    return "#/compare?" + q.toString();
  }

  // -- charts -----------------------------------------------------------------------------------
  function ema(ys, alpha) {
    if (!alpha) return ys;
    let last = 0, weight = 0;
    return ys.map(y => {
      if (y === null || y === undefined) return null;
      last = last * alpha + (1 - alpha) * y; weight = weight * alpha + (1 - alpha);
      return last / weight;
    });
  }
  // One chart: each run's [x, y] overlaid (uPlot.join aligns the x values of all of them).
  function lineChart(title, lines, opts) {
    const box = el("div", { cls: "chart", "data-metric": title }, el("h3", { text: title }));
    const tables = lines.map(l => {
      const pairs = [];
      for (let i = 0; i < l.x.length; i++) {
        let y = l.y[i];
        if (opts.log && !(y > 0)) y = null;
        if (l.x[i] !== null && l.x[i] !== undefined) pairs.push([l.x[i], y]);
      }
      pairs.sort((a, b) => a[0] - b[0]);
      return [pairs.map(p => p[0]), ema(pairs.map(p => p[1]), opts.smooth)];
    }).filter(t => t[0].length);
    if (!tables.length) { box.append(el("p", { cls: "muted", text: "no points" })); return box; }
    const joined = uPlot.join(tables);
    const series = [{ label: opts.xLabel || "x" }, ...lines.filter((l, i) => tables[i] !== undefined).slice(0, tables.length).map(l => ({
      label: l.label, stroke: l.colour, width: 1.25, spanGaps: true, points: { show: false },
    }))];
    const plot = new uPlot({
      width: opts.width || 460, height: opts.height || 240, series,
      scales: { x: { time: false }, y: opts.log ? { distr: 3 } : {} },
      legend: { show: lines.length <= 12 },
      cursor: { drag: { x: true, y: false } },
    }, joined, box);
    box.uplot = plot;
    return box;
  }

  function seriesLines(ids, series, metric, xKind) {
    return ids.map((id, i) => {
      const s = series[id];
      if (!s || !s.metrics[metric]) return null;
      let x = s.step;
      if (xKind === "time") {
        const t0 = s.time.find(t => t !== null);
        x = s.time.map(t => t === null ? null : t - t0);
      } else if (x.every(v => v === null)) {
        x = s.metrics[metric].map((_, j) => j + 1);
      }
      return { label: id, colour: colour(i), x, y: s.metrics[metric] };
    }).filter(Boolean);
  }

  function metricOrder(names) {
    return [...new Set(names)].sort((a, b) => (a.toLowerCase().includes("loss") ? 0 : 1) - (b.toLowerCase().includes("loss") ? 0 : 1) || (a < b ? -1 : a > b ? 1 : 0));
  }

  // -- compare ----------------------------------------------------------------------------------
  async function comparePage(params) {
    const ids = (params.get("ids") || "").split(",").filter(Boolean);
    if (params.has("where")) state.where = params.get("where");
    ids.forEach(id => state.selected.add(id));
    document.title = `compare ${ids.length} runs`;
    const mine = shown;
    const side = el("div", { id: "side" }), charts = el("div", { cls: "charts", id: "charts" });
    const xKind = el("select", { id: "x-kind" }, el("option", { value: "step", text: "step" }), el("option", { value: "time", text: "time (s)" }));
    const smooth = el("input", { type: "range", min: "0", max: "0.99", step: "0.01", value: "0", id: "smooth" });
    const logScale = el("input", { type: "checkbox", id: "log-scale" });
    const metricPick = el("select", { id: "parallel-metric" });
    const parallel = el("div", { id: "parallel" });
    fill(main, 
      el("h1", { text: ids.length ? `Compare ${ids.length} run(s)` : "Compare" }),
      ids.length ? null : el("p", { cls: "muted", text: "Select runs in the table, then Compare." }),
      el("h2", { text: "Params and metrics" }), side,
      el("h2", { text: "Curves" }),
      el("div", { cls: "toolbar" }, el("label", {}, "x: ", xKind), el("label", {}, "smoothing ", smooth),
        el("label", {}, logScale, " log scale")),
      charts,
      el("h2", { text: "Parallel coordinates" }),
      el("div", { cls: "toolbar" }, el("label", {}, "metric: ", metricPick),
        el("span", { cls: "muted", text: state.where ? `runs matching ${state.where}` : "all runs" })),
      parallel);
    if (!ids.length && !FROZEN) { drawParallel(); return; }
    let body;
    try { body = await api.series(ids); } catch (err) { fill(side, failure(err)); return; }
    if (stale(mine)) return;
    performance.mark("gitexp-series");
    sideBySide(side, ids, body.runs);
    const metrics = metricOrder(ids.flatMap(id => body.series[id] ? Object.keys(body.series[id].metrics) : []));
    const redraw = () => {
      const opts = { smooth: Number(smooth.value), log: logScale.checked, xLabel: xKind.value };
      fill(charts, ...metrics.map(m => lineChart(m, seriesLines(ids, body.series, m, xKind.value), opts)));
      performance.mark("gitexp-charts");
      // drawn, for benchmarks/bench_ui.py: the frame after the charts were made
      requestAnimationFrame(() => { window.gitexpCurves = performance.now(); });
    };
    for (const c of [xKind, smooth, logScale]) c.addEventListener(c === smooth ? "input" : "change", redraw);
    redraw();
    // below the curves, and heavy (a 1 MB library, thousands of lines): once they are on screen
    requestAnimationFrame(() => setTimeout(drawParallel, 0));

    async function drawParallel() {
      let found;
      try { found = await api.parallel(state, metricPick.value); } catch (err) { fill(parallel, failure(err)); return; }
      if (!metricPick.options.length) {
        const names = FROZEN ? Object.keys(FROZEN.parallel) : (await api.runs(state, 0, 1)).metrics;
        fill(metricPick, ...names.map(n => el("option", { value: n, text: n })));
        metricPick.value = found.metric;
        metricPick.addEventListener("change", drawParallel);
      }
      await parallelChart(parallel, found);
    }
  }

  function sideBySide(node, ids, rows) {
    const present = ids.filter(id => rows[id]);
    const table = el("table", { cls: "side" });
    table.append(el("tr", {}, el("th", { text: "" }), present.map((id, i) =>
      el("th", {}, el("span", { cls: "swatch", style: null }), runLink(id)))));
    table.querySelectorAll(".swatch").forEach((s, i) => { s.style.background = colour(i); });
    const line = (label, values) => {
      const differ = new Set(values.map(v => JSON.stringify(v === undefined ? null : v))).size > 1;
      table.append(el("tr", { cls: differ ? "differ" : "" }, el("th", { text: label }),
        values.map(v => el("td", { cls: typeof v === "number" ? "num" : "", text: show(v) }))));
    };
    line("status", present.map(id => rows[id].status));
    line("command", present.map(id => rows[id].command));
    const params = [...new Set(present.flatMap(id => Object.keys(rows[id].params)))].sort();
    const metrics = metricOrder(present.flatMap(id => Object.keys(rows[id].metrics)));
    for (const p of params) line("param " + p, present.map(id => rows[id].params[p]));
    for (const m of metrics) line("metric " + m, present.map(id => rows[id].metrics[m]));
    fill(node, table);
  }

  let echartsLoading = null;
  function loadEcharts() {
    if (window.echarts) return Promise.resolve();
    echartsLoading = echartsLoading || new Promise((resolve, reject) => {
      const s = el("script", { src: "/static/vendor/echarts.min.js" });
      s.addEventListener("load", resolve);
      s.addEventListener("error", () => reject(new Error("could not load the chart library")));
      document.head.append(s);
    });
    return echartsLoading;
  }

  async function parallelChart(node, found) {
    if (!found.rows.length) { fill(node, el("p", { cls: "muted", text: "no run has that metric" })); return; }
    await loadEcharts();
    const axes = found.axes.map((name, i) => found.numeric[i] ? { dim: i, name } : {
      dim: i, name, type: "category", data: [...new Set(found.rows.map(r => r[i] === null ? "" : String(r[i])))].sort(),
    });
    const m = found.axes.length;
    axes.push({ dim: m, name: found.metric, nameTextStyle: { fontWeight: "bold" } });
    const values = found.rows.map(r => r[m]);
    const chart = echarts.getInstanceByDom(node) || echarts.init(node, null, { renderer: "canvas" });
    chart.setOption({
      animation: false, tooltip: { show: false },
      parallelAxis: axes,
      parallel: { left: 60, right: 90, top: 40, bottom: 30 },
      visualMap: { type: "continuous", min: Math.min(...values), max: Math.max(...values), dimension: m,
        calculable: true, right: 0, top: 40, inRange: { color: ["#1a7f37", "#e3b341", "#cf222e"] } },
      series: [{ type: "parallel", lineStyle: { width: 1, opacity: 0.5 }, progressive: 2000,
        data: found.rows.map(r => r.slice(0, m + 1).map((v, i) => i < m && !found.numeric[i] ? (v === null ? "" : String(v)) : v)) }],
    }, true);
    node.dataset.lines = String(found.rows.length);
    window.gitexpParallel = performance.now();
  }

  // -- one run ----------------------------------------------------------------------------------
  async function runPage(id) {
    document.title = id;
    const mine = shown;
    let run;
    try { run = await api.run(id); } catch (err) { if (!stale(mine)) fill(main, failure(err)); return; }
    if (stale(mine)) return;
    const rec = run.record, res = run.result || {};
    const cancel = run.live && !FROZEN ? el("button", { id: "cancel", on: { click: async () => {
      cancel.disabled = true;
      try { await api.cancel(run.id); cancel.textContent = "cancelling…"; }
      catch (err) { cancel.after(failure(err)); }
    } } }, "Cancel run") : null;
    const status = el("span", { id: "run-status" }, badge(run.status));
    const kv = rows => el("table", { cls: "kv" }, rows.filter(r => r[1] !== null && r[1] !== undefined && r[1] !== "")
      .map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", {}, v instanceof Node ? v : el("span", { cls: "mono", text: show(v) })))));
    const log = el("pre", { cls: "log", id: "log" });
    const diffNode = el("div", { id: "diff" });
    const against = el("input", { type: "text", id: "against", placeholder: "another run (empty: its base commit)" });
    fill(main, 
      el("h1", {}, el("span", { cls: "mono", text: run.id + " " }), status, " ", cancel),
      el("h2", { text: "Record" }),
      kv([["command", run.command], ["directory", rec.cwd || "."], ["target", `${rec.target} (${rec.backend})`],
        ["snapshot", rec.snapshot], ["base", rec.base], ["branch", rec.branch], ["launched by", rec.user],
        ["launched", when(rec.launched_at)], ["name", rec.name], ["sweep", rec.sweep], ["rerun of", rec.rerun_of],
        ["exit code", res.exit_code], ["started", when(res.started_at)], ["ended", when(res.ended_at)],
        ["host", res.host], ["error", res.error], ["tags", (run.tags || []).join(", ")]]),
      el("h2", { text: "Data version" }),
      rec.data && Object.keys(rec.data).length ? kv(Object.entries(rec.data)) : el("p", { cls: "muted", text: "no DVC data" }),
      el("h2", { text: "Environment" }),
      kv([["python", rec.env && rec.env.python], ["platform", rec.env && rec.env.platform],
        ...Object.entries((rec.env && rec.env.variables) || {})]),
      el("h2", { text: "Params" }), Object.keys(run.params).length ? kv(Object.entries(run.params)) : el("p", { cls: "muted", text: "none" }),
      el("h2", { text: "Metrics" }), Object.keys(res.metrics || {}).length ? kv(Object.entries(res.metrics)) : el("p", { cls: "muted", text: "none yet" }),
      el("div", { cls: "charts", id: "run-charts" },
        metricOrder(Object.keys(run.series.metrics)).map(m => lineChart(m, seriesLines([run.id], { [run.id]: run.series }, m, "step"), {}))),
      run.checkpoints.length ? [el("h2", { text: "Checkpoints" }), el("table", { cls: "kv" }, run.checkpoints.map(c =>
        el("tr", {}, el("th", { text: when(c.time) }), el("td", { text: c.message }), el("td", { cls: "mono", text: show(c.metrics) }))))] : null,
      run.plots.length || run.plots_problem ? [el("h2", { text: "Plots" }), plotsOf(run)] : null,
      el("h2", { text: "Outputs" }), Object.keys(run.outputs).length ? kv(Object.entries(run.outputs).map(([p, o]) =>
        [p, o && typeof o === "object" ? `${o.hash || ""} ${o.size !== undefined ? o.size + " bytes" : ""}` : o])) : el("p", { cls: "muted", text: "none recorded" }),
      el("h2", { text: "Log" }), log,
      el("h2", { text: "Code and what else changed" }),
      FROZEN ? null : el("div", { cls: "toolbar" }, against, el("button", { on: { click: () => loadDiff(diffNode, run.id, against.value.trim()) } }, "Diff")),
      diffNode);
    let offset = -1, timer = null;
    const tail = async () => {
      try {
        const chunk = await api.log(run.id, offset);
        if (offset < 0 && chunk.cut) log.append(el("span", { cls: "muted", text: "… (earlier lines: git exp logs " + run.id + ")\n" }));
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        if (chunk.text) log.append(document.createTextNode(chunk.text));
        if (atEnd) log.scrollTop = log.scrollHeight;
        offset = chunk.offset;
        if (chunk.status && chunk.status !== run.status) { run.status = chunk.status; fill(status, badge(chunk.status)); }
        if (!chunk.live && timer) { clearInterval(timer); timer = null; if (cancel) cancel.remove(); }
      } catch (err) { log.append(document.createTextNode("\n[" + err.message + "]")); }
    };
    await tail();
    if (run.live && !FROZEN) timer = setInterval(tail, 1000);
    stopPage = () => { if (timer) clearInterval(timer); };
    loadDiff(diffNode, run.id, "");
  }

  function plotsOf(run) {
    const box = el("div", { cls: "charts" });
    for (const p of run.plots) {
      if (p.image) box.append(el("figure", { cls: "chart" }, el("img", { src: p.image, alt: p.title }), el("figcaption", { text: p.title })));
      else {
        const numeric = p.series.every(s => s.x.every(v => typeof v === "number") && s.y.every(v => typeof v === "number"));
        if (numeric && !p.template.startsWith("confusion") && !p.template.startsWith("bar")) {
          box.append(lineChart(p.title, p.series.map((s, i) => ({ label: s.name, colour: colour(i), x: s.x, y: s.y })), { xLabel: p.x_label }));
        } else {
          box.append(el("div", { cls: "chart" }, el("h3", { text: p.title }), el("table", { cls: "kv" },
            p.series.flatMap(s => s.x.map((x, i) => el("tr", {}, el("td", { text: s.name }), el("td", { text: show(x) }),
              el("td", { text: show(s.y[i]) }), s.n.length ? el("td", { text: show(s.n[i]) }) : null))))));
        }
      }
    }
    const all = el("div", {}, box);
    if (run.plots_problem) all.append(el("p", { cls: "error", text: "plots left out: " + run.plots_problem }));
    return all;
  }

  async function loadDiff(node, id, against) {
    fill(node, el("p", { cls: "muted", text: "…" }));
    let d;
    try { d = await api.diff(id, against); } catch (err) { fill(node, failure(err)); return; }
    const section = (title, changes) => {
      const keys = Object.keys(changes || {});
      return [el("h3", { text: title }), keys.length ? el("table", { cls: "side" },
        el("tr", {}, el("th", { text: "" }), el("th", { text: d.a }), el("th", { text: d.b })),
        keys.map(k => el("tr", { cls: "differ" }, el("th", { text: k }), el("td", { text: show(changes[k].a) }), el("td", { text: show(changes[k].b) }))))
        : el("p", { cls: "muted", text: "the same" })];
    };
    const patch = el("pre", { cls: "patch" });
    for (const line of (d.code.patch || "").split("\n")) {
      const kind = line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "";
      patch.append(el("span", { cls: kind, text: line + "\n" }));
    }
    fill(node, 
      el("p", { cls: "muted", text: d.against_base ? `against its base commit ${d.a}` : `${d.b} against ${d.a}` }),
      d.command ? section("Command", { argv: d.command }) : null,
      section("Params", d.params), section("Data", d.data),
      d.against_base ? null : section("Metrics", Object.fromEntries(Object.entries(d.metrics).filter(([, c]) => show(c.a) !== show(c.b)))),
      d.against_base ? null : section("Environment", d.environment),
      el("h3", { text: `Code (${d.code.files.length} file(s))` }), el("pre", { cls: "patch", text: d.code.stat || "no change" }),
      d.code.patch ? patch : null,
      d.code.patch_cut ? el("p", { cls: "muted", text: `… cut at 1 MB: git exp diff -p ${id}${against ? " " + against : ""}` }) : null);
  }

  // -- routing ----------------------------------------------------------------------------------
  function route() {
    stopPage(); stopPage = () => {};
    shown++;
    const hash = location.hash.slice(1) || "/";
    const [path, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    document.getElementById("where-am-i").textContent = FROZEN ? FROZEN.subtitle : "";
    if (path.startsWith("/run/")) return runPage(decodeURIComponent(path.slice(5)));
    if (path === "/compare") return comparePage(params.has("ids") ? params : new URLSearchParams({ ids: [...state.selected].join(","), where: state.where }));
    return tablePage();
  }
  window.addEventListener("hashchange", route);
  route();
})();
