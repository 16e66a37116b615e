// The siege game-day page: the runs, a run's live charts and timeline from its event stream
// (server-sent events, resumed by the browser with Last-Event-ID, deduplicated by seq), the
// instructor's and the participants' controls. Plain JavaScript, no build step.
"use strict";
(function () {
  // What the tests read back: errors caught, per shown event the ms from its emission to the
  // page showing it.
  const S = (window.__siege = { errors: [], latencies: [], events: 0, statuses: [], health: [] });
  window.addEventListener("error", (e) => S.errors.push(String(e.message)));
  window.addEventListener("unhandledrejection", (e) => S.errors.push("unhandled: " + String(e.reason && e.reason.message || e.reason)));
  const SVGNS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  function takeToken() {
    // From the fragment only, which the browser never sends: a token in the query would be in
    // the request line of every server and proxy log.
    const h = new URLSearchParams(location.hash.slice(1));
    const t = h.get("token");
    if (t) {
      sessionStorage.setItem("siege-token", t);
      const keep = ["run", "present"].filter((k) => h.get(k)).map((k) => k + "=" + encodeURIComponent(h.get(k))).join("&");
      history.replaceState(null, "", location.pathname + (keep ? "#" + keep : ""));
    }
    return sessionStorage.getItem("siege-token") || "";
  }
  const token = takeToken();
  let role = "anonymous";
  let participantToken = null; // the instructor's page knows it, for the presenter view
  let scenarios = [];

  async function api(method, path, body) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let v = text;
    try { v = JSON.parse(text); } catch (_) { /* not JSON */ }
    if (!r.ok) {
      const e = new Error(v && v.error ? v.error.message : "HTTP " + r.status);
      e.code = v && v.error ? v.error.code : "";
      throw e;
    }
    return v;
  }

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "class") e.className = v;
      else if (v !== false && v != null) e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of kids.flat(Infinity)) if (c != null) e.append(c.nodeType ? c : String(c));
    return e;
  }
  const fmtS = (s) => (s == null ? "–" : Number(s).toFixed(1) + " s");
  // What a browser cannot send a header with (a stream, a link) carries a read token: one run,
  // one hour, never the page's own token.
  async function withReadToken(runId, p) {
    if (!token) return p;
    const rt = await api("GET", "/v1/runs/" + encodeURIComponent(runId) + "/read-token");
    return p + (p.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(rt.token);
  }

  // A control's status: pending until `confirm` (an event test) matches, or refused.
  function status(control) {
    return el("span", { class: "status", "data-control": control || "" });
  }
  function setStatus(s, kind, text) {
    S.statuses.push((s.dataset.control || "") + ": " + text);
    s.className = "status " + kind;
    s.textContent = text;
    // A refusal or a confirmation says something about a moment: it goes after a while, so
    // that it is not read as still applying.
    clearTimeout(s.expiry);
    if (kind !== "pending") s.expiry = setTimeout(() => { s.className = "status"; s.textContent = ""; }, kind === "bad" ? 10000 : 6000);
  }

  let view = null; // the run view in use, if any
  let listTimer = null;

  async function route() {
    if (view) view.close();
    view = null;
    clearInterval(listTimer);
    const h = new URLSearchParams(location.hash.slice(1));
    const id = h.get("run") || h.get("present");
    document.body.classList.toggle("present", !!h.get("present"));
    if (id) view = new RunView(id, !!h.get("present"));
    else await listView();
  }

  async function listView() {
    const main = $("main");
    const scen = el("div");
    const runs = el("div");
    main.replaceChildren(el("h2", {}, "Scenarios"), scen, el("h2", {}, "Runs"), runs);
    scen.replaceChildren(...scenarios.map(scenarioRow));
    if (!scenarios.length) scen.append(el("p", { class: "dim" }, "No scenario found."));
    const refresh = async () => {
      const v = await api("GET", "/v1/runs?limit=50");
      runs.replaceChildren(el("table", {},
        el("tr", {}, ["run", "scenario", "state", "started", "time to detect", "time to restore"].map((h) => el("th", {}, h))),
        v.runs.map((r) => el("tr", {},
          el("td", {}, el("a", { href: "#run=" + encodeURIComponent(r.id), class: "run-link" }, r.id)),
          el("td", {}, r.scenario), el("td", { class: r.state }, r.state),
          el("td", {}, new Date(r.started_at).toLocaleTimeString()),
          el("td", {}, fmtS(r.time_to_detect_s)), el("td", {}, fmtS(r.mttr_s))))));
    };
    await refresh();
    // The page may have moved on (to a run) while the first list was loading.
    if (!runs.isConnected) return;
    listTimer = setInterval(() => refresh().catch((e) => console.warn(e)), 3000);
  }

  function scenarioRow(sc) {
    if (sc.error) return el("div", { class: "panel" }, el("b", {}, sc.file), " ", el("span", { class: "bad" }, sc.error));
    const kids = [el("b", {}, sc.name), " ", el("span", { class: "dim" },
      `${sc.duration_s} s at ${sc.rate}/s; ${sc.faults.length} timeline fault(s), ${sc.manual.length} manual`)];
    if (sc.description) kids.push(el("div", { class: "dim" }, sc.description));
    if (role === "instructor") {
      const blind = el("input", { type: "checkbox", class: "blind" });
      const st = status("start");
      const go = el("button", { class: "start", "data-scenario": sc.name, onclick: async () => {
        // One run per click: the button stays disabled until the run's page opens or the start
        // is refused (a double click sends one request).
        if (go.disabled) return;
        go.disabled = true;
        setStatus(st, "pending", "starting… (pending)");
        try {
          const v = await api("POST", "/v1/runs", { scenario: sc.file, blind: blind.checked });
          location.hash = "run=" + encodeURIComponent(v.id);
        } catch (e) {
          go.disabled = false;
          setStatus(st, "bad", "refused: " + e.message);
        }
      } }, "Start");
      kids.push(el("div", { class: "row" }, go, el("label", {}, blind, " blind (participants do not see which fault)"), st));
    }
    return el("div", { class: "panel scenario" }, kids);
  }

  // ---- charts -------------------------------------------------------------------------------
  // Distinct colours and dash styles, so that overlapping lines stay apart (and apart in grey).
  const STYLES = [["#0969da", ""], ["#cf222e", "8 4"], ["#8250df", "2 3"], ["#1a7f37", "10 3 2 3"], ["#9a6700", "4 4"]];
  const FONT = 15; // px: the SVG is drawn at its own size, so this is what the room reads

  // Makes SVG elements into `kids`: mk(tag, attributes, text).
  function svgMaker(kids) {
    return (tag, a, text) => {
      const e = document.createElementNS(SVGNS, tag);
      for (const [k, v] of Object.entries(a)) e.setAttribute(k, v);
      if (text != null) e.textContent = text;
      kids.push(e);
      return e;
    };
  }

  // The smallest 1, 2, 2.5 or 5 × 10^k at or above v, and the round step of its gridlines.
  function niceAxis(v) {
    if (!(v > 0)) return { max: 1, step: 0.2 };
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const [m, step] of [[1, 0.2], [2, 0.5], [2.5, 0.5], [5, 1], [10, 2]]) if (m * p >= v * 0.9999) return { max: m * p, step: step * p };
    return { max: 10 * p, step: 2 * p };
  }

  // Draws one chart into `svg`, at the size it is shown (no stretching): series [{name,
  // points: [[t, v]]}], bands [{from, to, kind}] shaded (fault windows, spikes), thresholds
  // [{v, label}], x from 0 to tMax; gridlines at round values.
  function drawChart(svg, series, bands, thresholds, tMax, unit) {
    const W = Math.max(320, Math.round(svg.clientWidth || 600)), H = Math.max(200, Math.round(svg.clientHeight || 240));
    const L = 64, R = 28, T = 36, B = 30;
    let top = 0;
    for (const s of series) for (const p of s.points) if (p[1] != null) top = Math.max(top, p[1]);
    for (const th of thresholds) top = Math.max(top, th.v);
    const axis = niceAxis(top * 1.05), yMax = axis.max;
    const x = (t) => L + (Math.min(Math.max(0, t), tMax) / tMax) * (W - L - R);
    const y = (v) => T + (1 - v / yMax) * (H - T - B);
    const kids = [], mk = svgMaker(kids);
    const txt = { "font-size": FONT, fill: "#4b5368" };
    for (const b of bands) {
      mk("rect", { x: x(b.from), y: T, width: Math.max(3, x(b.to) - x(b.from)), height: H - T - B,
        fill: b.kind === "spike" ? "#9a6700" : "#cf222e", "fill-opacity": 0.14, class: b.kind === "spike" ? "spike-band" : "fault-band" });
    }
    const fmt = (v) => +v.toPrecision(3) + unit;
    for (let i = 0; i * axis.step <= yMax * 1.0001; i++) {
      const v = i * axis.step;
      mk("line", { x1: L, y1: y(v), x2: W - R, y2: y(v), stroke: i ? "#e4e7ee" : "#999", class: "grid" });
      mk("text", { ...txt, x: L - 6, y: y(v) + FONT / 3, "text-anchor": "end" }, fmt(v));
    }
    const step = [5, 10, 15, 30, 60, 120, 300, 600].find((s) => tMax / s <= Math.max(4, (W - L - R) / 90)) || 600;
    for (let t = 0; t <= tMax + 1e-9; t += step) mk("text", { ...txt, x: x(t), y: H - 8, "text-anchor": t === 0 ? "start" : "middle" }, t + " s");
    for (const th of thresholds) {
      mk("line", { x1: L, y1: y(th.v), x2: W - R, y2: y(th.v), stroke: "#9a6700", "stroke-width": 2, "stroke-dasharray": "6 4", class: "threshold" });
      mk("text", { ...txt, x: W - R, y: y(th.v) - 5, "text-anchor": "end", fill: "#7a5200" }, th.label);
    }
    let n = 0, lx = L;
    series.forEach((s, i) => {
      const [color, dash] = STYLES[i % STYLES.length];
      const pts = s.points.filter((p) => p[1] != null);
      n = Math.max(n, pts.length);
      if (pts.length) mk("polyline", { points: pts.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" "), fill: "none", stroke: color, "stroke-width": 2.5, "stroke-dasharray": dash });
      // The legend: each series' line style beside its name, above the plot.
      mk("line", { x1: lx, y1: 16, x2: lx + 26, y2: 16, stroke: color, "stroke-width": 3, "stroke-dasharray": dash });
      mk("text", { ...txt, x: lx + 32, y: 16 + FONT / 3, fill: color, class: "legend" }, s.name);
      lx += 46 + s.name.length * FONT * 0.6;
    });
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    svg.dataset.points = n;
    svg.replaceChildren(...kids);
  }

  // The lanes above the charts, as Steadybit draws a run: one row per fault (injected to
  // reverted; an instantaneous one as a mark at its injection and, lighter, the break that
  // followed it), one row per steady-state check, red in the seconds it failed.
  function drawLanes(svg, faults, checks, seconds, tMax) {
    const W = Math.max(320, Math.round(svg.clientWidth || 1200)), ROW = 30, L = 200, R = 28;
    const rows = faults.length + checks.length;
    const H = Math.max(1, rows) * ROW + 8;
    const x = (t) => L + (Math.min(Math.max(0, t), tMax) / tMax) * (W - L - R);
    const kids = [], mk = svgMaker(kids);
    // The seconds that failed any check: the breaks an instantaneous fault's effect is read from.
    const broken = seconds.filter((s) => s.failing && s.failing.length).map((s) => s.second);
    let row = 0;
    const label = (text, cls) => mk("text", { x: 4, y: row * ROW + ROW / 2 + 5, "font-size": FONT, fill: "#1d2330", class: cls }, text);
    for (const f of faults) {
      const y = row * ROW + 6, h = ROW - 10;
      label(f.label, "lane-fault");
      mk("line", { x1: L, y1: y + h / 2, x2: W - R, y2: y + h / 2, stroke: "#e4e7ee" });
      if (f.end != null && f.end - f.start < 0.5) {
        // Instantaneous: its observed effect, the first break within 10 s of it, to its end.
        const first = broken.find((s) => s + 1 >= f.start && s < f.start + 10);
        if (first != null) {
          let last = first;
          while (broken.includes(last + 1)) last++;
          mk("rect", { x: x(first), y, width: Math.max(3, x(last + 1) - x(first)), height: h, fill: "#cf222e", "fill-opacity": 0.35, class: "lane-effect" });
        }
        mk("path", { d: `M${x(f.start)},${y - 2} l7,${h / 2 + 2} l-7,${h / 2 + 2} l-7,${-h / 2 - 2}z`, fill: "#cf222e", class: "lane-instant" });
      } else {
        mk("rect", { x: x(f.start), y, width: Math.max(3, x(f.end != null ? f.end : f.now) - x(f.start)), height: h, fill: "#cf222e", rx: 3, class: "lane-window" });
      }
      row++;
    }
    for (const c of checks) {
      const y = row * ROW + 6, h = ROW - 10;
      label(c.label, "lane-check");
      for (const s of seconds) {
        if (!s.failing) continue;
        const bad = s.failing.includes(c.metric);
        mk("rect", { x: x(s.second), y, width: Math.max(1, x(s.second + 1) - x(s.second)) + 0.5, height: h, fill: bad ? "#cf222e" : "#1a7f37", "fill-opacity": bad ? 0.9 : 0.25, class: bad ? "lane-fail" : "lane-ok" });
      }
      row++;
    }
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    svg.replaceChildren(...kids);
  }

  const CHARTS = [
    { id: "rate", title: "Rate (requests/s)", unit: "", metrics: { rps: 1 }, series: [["achieved", (w) => w.requests], ["scheduled", (w) => w.scheduled]] },
    { id: "errors", title: "Error rate (%)", unit: "%", metrics: { error_rate: 100 }, series: [["errors", (w) => (w.requests ? (100 * errorCount(w)) / w.requests : 0)]] },
    { id: "latency", title: "Latency (ms)", unit: "", metrics: { p50: 1, p95: 1, p99: 1 }, series: [["p50", (w) => w.latency_ms.p50], ["p95", (w) => w.latency_ms.p95], ["p99", (w) => w.latency_ms.p99]] },
    { id: "capacity", title: "Healthy targets / running tasks", unit: "", metrics: { healthy_targets: 1, running_tasks: 1 }, series: [["healthy", (w, s) => s && s.healthy_targets], ["running", (w, s) => s && s.running_tasks]] },
  ];
  // A steady-state check in words, with its unit: `error_rate < 5%`, `p95 < 1500 ms`.
  function checkLabel(k) {
    const c = CHARTS.find((c) => c.metrics[k.metric]);
    const v = c ? k.value * c.metrics[k.metric] : k.value;
    return `${k.metric} ${k.op} ${+v.toPrecision(3)}${c && c.unit ? c.unit : c && c.id === "latency" ? " ms" : ""}`;
  }
  function errorCount(w) {
    return Object.values(w.errors || {}).reduce((a, b) => a + b, 0);
  }

  // ---- a run ----------------------------------------------------------------------------------
  class RunView {
    constructor(id, present) {
      this.id = id;
      this.present = present; // the presenter view: read only, for the projector
      this.lastSeq = -1;
      this.windows = []; // [second, window, sample]
      this.bands = []; // {name, start, end}
      this.timeline = [];
      this.active = new Map(); // fault name -> {start, for_s}
      this.injected = []; // fault names (aliases in a blind run), in the order injected
      this.marks = []; // detected and mitigated marks: {id, kind, author, fault}
      this.faultPickers = []; // the <select>s that offer the injected faults
      this.pending = [];
      this.health = null; // the last closed second's {state, since, detail}
      this.detail = false; // the timeline shows the lab's own events too
      this.phase = "…";
      this.finished = null;
      this.info = null;
      this.tNow = 0;
      this.tNowAt = Date.now();
      this.opened = Date.now();
      this.fresh = []; // `at` of events applied since the last render
      this.closed = false;
      this.build();
      this.load().catch((e) => this.fail(e));
      this.tick = setInterval(() => this.renderActive(), 1000);
      // A fresh stream without Last-Event-ID (as after the page lost it): replayed, deduplicated.
      S.reconnect = () => { this.es.close(); this.connect(); };
      S.view = this;
    }

    close() {
      this.closed = true;
      clearInterval(this.tick);
      if (this.es) this.es.close();
    }

    fail(e) {
      S.errors.push(String(e.message || e));
      this.head.append(el("p", { class: "bad" }, String(e.message || e)));
    }

    // What gives a blind run's faults away is hidden from everyone but the instructor's own
    // page, and from the presenter view (on the projector) too, until the run ends.
    get blind() {
      return (role !== "instructor" || this.present) && this.info && this.info.blind && this.info.state === "running" && !this.finished;
    }

    presenting() {
      return this.present && !this.finished;
    }

    build() {
      const c = (id) => el("div", { class: "chart" }, el("h3", {}, CHARTS.find((x) => x.id === id).title), document.createElementNS(SVGNS, "svg"));
      this.head = el("div");
      this.healthEl = el("div", { id: "health", class: "health h-waiting" }, "waiting for the first second of load");
      this.controls = el("div");
      this.lanes = document.createElementNS(SVGNS, "svg");
      this.lanes.id = "lanes";
      this.charts = el("div", { class: "charts" }, CHARTS.map((x) => { const d = c(x.id); d.id = "chart-" + x.id; return d; }));
      this.activeEl = el("ul", { class: "active", id: "active-faults" });
      this.timelineEl = el("ul", { id: "timeline" });
      this.report = el("div", { id: "report" });
      $("main").replaceChildren(this.head, this.healthEl, this.report, this.controls, el("div", { class: "panel lanes" }, this.lanes), this.charts,
        el("div", { class: "cols" },
          el("div", {}, el("h2", {}, "Timeline ",
            el("label", { class: "dim small" }, el("input", { type: "checkbox", id: "timeline-detail", onchange: (e) => { this.detail = e.target.checked; this.render(); } }), " the lab's events too")),
          el("div", { class: "timeline" }, this.timelineEl)),
          el("div", {}, el("h2", {}, "Active faults"), this.activeEl)));
    }

    async load() {
      this.info = await api("GET", "/v1/runs/" + encodeURIComponent(this.id));
      this.sc = scenarios.find((s) => s.name === this.info.scenario) || null;
      this.renderHead();
      this.renderControls();
      this.connect();
    }

    async connect() {
      // The browser reconnects by itself and sends Last-Event-ID; seq dedupes what comes twice.
      // A stream closed for good comes back here, with a fresh read token.
      let url;
      try {
        url = await withReadToken(this.id, "/v1/runs/" + encodeURIComponent(this.id) + "/events");
      } catch (_) {
        $("conn").textContent = "reconnecting…";
        setTimeout(() => { if (!this.closed && !this.finished) this.connect(); }, 2000);
        return;
      }
      if (this.closed || this.finished) return;
      this.es = new EventSource(url);
      this.es.onopen = () => { $("conn").textContent = "live"; };
      this.es.onerror = () => {
        if (this.closed || this.finished) return;
        $("conn").textContent = "reconnecting…";
        // A run that ended without its final event (it was interrupted when the daemon was
        // killed) has a stream that ends each time: it is shown ended, not reconnected for ever.
        this.checkEnded();
        // Closed for good (an HTTP error): a new stream from the start, deduplicated by seq.
        if (this.es.readyState === EventSource.CLOSED) setTimeout(() => { if (!this.closed && !this.finished) this.connect(); }, 2000);
      };
      const onEvent = (m) => {
        let env;
        try { env = JSON.parse(m.data); } catch (_) { return; }
        this.apply(env);
      };
      for (const ty of TYPES) this.es.addEventListener(ty, onEvent);
      this.es.onmessage = onEvent;
    }

    async checkEnded() {
      let info;
      try { info = await api("GET", "/v1/runs/" + encodeURIComponent(this.id)); } catch (_) { return; }
      if (this.closed || this.finished || info.state === "running") return;
      this.es.close();
      this.info = info;
      this.finished = { outcome: info.state, reason: `the run ended ${info.state}, without its final event` };
      this.active.clear();
      $("conn").textContent = "ended";
      this.schedule();
      this.loadReport();
    }

    apply(env) {
      if (env.seq <= this.lastSeq) return; // already shown
      this.lastSeq = env.seq;
      S.events++;
      const ev = env.event;
      if (env.t != null) { this.tNow = env.t; this.tNowAt = Date.now(); }
      this.fresh.push(env.at);
      const add = (kind, text, t) => this.timeline.push({ t: t != null ? t : env.t, kind, text, seq: env.seq });
      const hide = this.blind;
      if (hide) this.hid = true;
      const fname = (f) => (hide ? "a fault" : f);
      switch (ev.type) {
        case "second-closed":
          this.windows.push([ev.window.second, ev.window, ev.sample, ev.health ? ev.health.failing : null]);
          if (ev.health) { this.health = ev.health; this.healthAt = env.at; }
          break;
        case "phase-changed": this.phase = ev.phase; add("phase", "phase " + ev.phase, ev.t); break;
        case "load-started": add("phase", "load started"); break;
        case "baseline-checked": add(ev.held ? "ok" : "stop", (ev.held ? "baseline held: " : "baseline did not hold: ") + ev.detail, ev.t); break;
        case "stage-started": {
          // A stage above the scenario's rate is a spike: shaded on the charts until the next stage.
          const open = this.bands.find((b) => b.kind === "spike" && b.end == null);
          if (open) open.end = ev.t;
          if (this.sc && ev.rate > this.sc.rate) this.bands.push({ name: "spike", kind: "spike", start: ev.t, end: null });
          add("phase", "rate " + ev.rate + "/s", ev.t);
          break;
        }
        case "fault-injected": {
          this.bands.push({ name: ev.fault, start: ev.t, end: null });
          const base = ev.fault.split("#")[0];
          const def = this.sc && [...this.sc.faults, ...this.sc.manual].find((f) => f.name === base);
          this.active.set(ev.fault, { start: ev.t, for_s: def ? def.for_s : null });
          this.injected.push(ev.fault);
          this.offerFaults();
          add("fault", hide ? "fault injected (blind run: hidden until the end)" : `fault ${ev.fault} injected: ${ev.summary}`, ev.t);
          break;
        }
        case "fault-inject-failed": add("stop", `fault ${fname(ev.fault)}: injection failed: ${ev.error}`, ev.t); break;
        case "fault-reverted":
        case "fault-settled": {
          const b = this.bands.find((x) => x.name === ev.fault && x.end == null);
          if (b) b.end = ev.t;
          this.active.delete(ev.fault);
          this.offerFaults();
          add("ok", `fault ${fname(ev.fault)} ${ev.type === "fault-reverted" ? "reverted" : "done"}`, ev.t);
          break;
        }
        case "fault-revert-failed": add("stop", `fault ${fname(ev.fault)}: revert failed: ${ev.error}`, ev.t); break;
        case "steady-state-broken": add("stop", "steady state broken: " + ev.detail, ev.t); break;
        case "steady-state-restored": add("ok", "steady state restored", ev.t); break;
        case "cancelled": add("stop", `stopped (${ev.reason.kind}): ${ev.reason.detail}`, ev.t); break;
        // (The lab logs each fault it is told to apply as `fault: …`.)
        case "service-event": if (!(hide && ev.text.startsWith("fault: "))) add("service", ev.text, ev.t); break;
        case "note": add("note", ev.text, ev.t); break;
        case "mark-added":
          if (ev.mark.kind !== "note") this.marks.push({ id: ev.mark.id, kind: ev.mark.kind, author: ev.mark.author, fault: ev.mark.fault });
          this.offerFaults();
          add("mark", `${ev.mark.kind} (${ev.mark.author})${ev.mark.fault && !hide ? " for " + ev.mark.fault : ""}${ev.mark.text ? ": " + ev.mark.text : ""}`, ev.t);
          break;
        case "mark-moved": {
          const m = this.marks.find((x) => x.id === ev.id);
          if (m) m.fault = ev.fault;
          this.offerFaults();
          add("mark", hide ? `mark ${ev.id} moved to another fault` : `mark ${ev.id} moved from ${ev.from} to ${ev.fault}`, ev.t);
          break;
        }
        case "run-finished":
          this.finished = ev;
          this.active.clear();
          add(ev.outcome === "passed" ? "ok" : "stop", `run finished: ${ev.outcome}: ${ev.reason}`);
          this.es.close();
          $("conn").textContent = "ended";
          this.loadReport();
          break;
        default: break;
      }
      for (const p of this.pending.filter((p) => p.confirm(ev))) {
        setStatus(p.st, "ok", "confirmed by the run" + (env.t != null ? " at " + env.t.toFixed(1) + " s" : ""));
        this.pending.splice(this.pending.indexOf(p), 1);
      }
      this.schedule();
    }

    schedule() {
      if (this.timer) return;
      this.timer = setTimeout(() => {
        this.timer = null;
        this.render();
        const now = Date.now();
        for (const at of this.fresh) {
          const t = Date.parse(at);
          if (t >= this.opened) S.latencies.push(now - t);
        }
        this.fresh = [];
      }, 30);
    }

    render() {
      if (this.closed) return;
      this.renderHead();
      const dur = this.sc ? this.sc.duration_s : 0;
      const tMax = Math.max(10, dur, this.windows.length ? this.windows[this.windows.length - 1][0] + 1 : 0);
      const bands = this.bands.map((b) => ({ from: b.start, to: b.end != null ? b.end : Math.max(b.start + 1, this.tNow), kind: b.kind || "fault" }));
      const checks = this.sc ? this.sc.steady_state : [];
      // (`blind` covers the presenter view of a blind run too.)
      const hide = this.blind;
      let n = 0;
      const faults = this.bands.filter((b) => b.kind !== "spike").map((b) => ({ label: hide ? `fault ${++n}` : b.name, start: b.start, end: b.end, now: this.tNow }));
      const seconds = this.windows.map(([second, , , failing]) => ({ second, failing }));
      drawLanes(this.lanes, faults, checks.map((k) => ({ metric: k.metric, label: checkLabel(k) })), seconds, tMax);
      for (const c of CHARTS) {
        const series = c.series.map(([name, f]) => ({ name, points: this.windows.map(([s, w, smp]) => [s + 1, f(w, smp)]) }));
        const th = checks.filter((k) => c.metrics[k.metric]).map((k) => ({ v: k.value * c.metrics[k.metric], label: checkLabel(k) }));
        drawChart($("chart-" + c.id).querySelector("svg"), series, bands, th, tMax, c.unit);
      }
      // In time order, the latest first (events arrive in emission order: a fault's `t` is when it
      // was injected, told after the second that was closing); the lab's own events on request.
      const shown = this.timeline.filter((e) => this.detail || e.kind !== "service");
      const at = (e) => (e.t != null ? e.t : -1);
      shown.sort((a, b) => at(b) - at(a) || b.seq - a.seq);
      this.timelineEl.replaceChildren(...shown.map((e) =>
        el("li", { class: "k-" + e.kind, "data-seq": e.seq, "data-t": e.t != null ? e.t : "" }, el("span", { class: "t" }, e.t != null ? e.t.toFixed(1) + " s" : ""), e.text)));
      this.renderActive();
      if (this.finished) this.controls.replaceChildren();
    }

    renderHead() {
      const i = this.info;
      if (!i) return;
      const state = this.finished ? this.finished.outcome : i.state;
      // A blind run's name says which fault it is about: not shown until it ends.
      const kids = [el("h2", {}, this.blind ? "A blind run " : `${i.scenario} `, el("span", { class: "dim" }, this.blind ? "" : i.id))];
      // Once the run ended: its outcome, and how long the load ran (not a clock that ran on).
      const clock = this.finished ?
        [" · ended after ", el("span", { id: "clock" }, fmtS(this.loadSeconds()))] :
        [" · phase ", el("span", { id: "phase" }, this.phase), " · ", el("span", { id: "clock" }, this.tNow.toFixed(0) + " s"), this.sc ? " of " + this.sc.duration_s + " s" : ""];
      kids.push(el("div", { class: "banner" }, el("span", { id: "verdict", class: state }, state), clock,
        i.blind ? el("span", { class: "dim" }, " · blind run") : null,
        role === "instructor" && !this.present ? [" · ", el("a", { id: "present-link", href: "#" + (token ? "token=" + encodeURIComponent(token) + "&" : "") + "present=" + encodeURIComponent(this.id), target: "_blank" }, "presenter view")] : null));
      if (this.present && this.marks.length) {
        kids.push(el("p", { id: "marked" }, "Marked so far: ", this.marks.map((m) => `${m.author} (${m.kind})`).join(", ")));
      }
      if (this.presenting() && participantToken) {
        const link = location.origin + "/#token=" + encodeURIComponent(participantToken) + "&run=" + encodeURIComponent(this.id);
        // The link as a QR code to scan from the room, made by the daemon once (no external asset).
        if (!this.qrEl) {
          this.qrEl = el("div", { id: "join-qr", class: "join-qr" });
          api("GET", "/v1/qr.svg?text=" + encodeURIComponent(link)).then((svg) => { this.qrEl.innerHTML = svg; }).catch((e) => S.errors.push(String(e.message)));
        }
        kids.unshift(this.qrEl);
        kids.push(el("p", { id: "join", class: "join" }, "Join and mark: ", el("b", {}, link)));
      }
      this.head.replaceChildren(...kids);
      this.renderHealth();
    }

    // How long the load ran: its last closed second.
    loadSeconds() {
      return this.windows.length ? this.windows[this.windows.length - 1][0] + 1 : this.tNow;
    }

    // The banner the room reads: is the service broken right now, and since when. From the
    // run's own per-second evaluation; the verdict replaces it at the end.
    renderHealth() {
      const h = this.health, f = this.finished;
      let cls, text;
      if (f) {
        cls = f.outcome === "passed" ? "h-steady" : "h-broken";
        text = [el("b", {}, f.outcome.toUpperCase()), ": " + f.reason];
      } else if (!h) {
        cls = "h-waiting";
        text = [this.info && this.info.state !== "running" ? "the run ended" : "waiting for the first second of load"];
      } else {
        const now = this.loadSeconds();
        const hold = this.sc ? this.sc.recovery.hold_s : null;
        const dur = (since) => `since ${fmtS(since)}, for ${fmtS(Math.max(0, now - since))}`;
        if (h.state === "broken") { cls = "h-broken"; text = [el("b", {}, "BROKEN"), `: ${h.detail} · ${dur(h.since)}`]; }
        else if (h.state === "recovering") { cls = "h-recovering"; text = [el("b", {}, "RECOVERING"), `: steady ${dur(h.since)}` + (hold ? `, held once steady for ${fmtS(hold)}` : "")]; }
        else { cls = "h-steady"; text = [el("b", {}, "STEADY"), ": every check holds"]; }
      }
      const state = f ? f.outcome : h ? h.state : "waiting";
      // What the tests read back: each change of the banner, when it was shown, and when the
      // second that caused it was emitted.
      if (this.healthEl.dataset.state !== state) S.health.push({ state, since: h && h.since, detail: h && h.detail, shownAt: Date.now(), eventAt: h && !f ? Date.parse(this.healthAt) : null });
      this.healthEl.className = "health " + cls;
      this.healthEl.dataset.state = state;
      this.healthEl.replaceChildren(...text);
    }

    // The selected manual fault's injection window, as the run judges it: from the steady-state
    // gate until the fault, `within` and `hold` still fit before the load ends.
    renderInjectWindow() {
      const pick = $("fault-pick"), button = $("inject"), out = this.injectWindow;
      if (!pick || !button || !out || !this.sc) return;
      const m = this.sc.manual.find((x) => x.name === pick.value);
      if (!m) return;
      const until = this.sc.duration_s - (m.for_s || 0) - this.sc.recovery.within_s - this.sc.recovery.hold_s;
      const now = this.tNow + (this.finished ? 0 : (Date.now() - this.tNowAt) / 1000);
      const open = ["faults", "recovery"].includes(this.phase);
      let text;
      if (this.finished || now > until) text = `closed at ${fmtS(Math.max(0, until))}`;
      else if (!open) text = `opens once the baseline held, until ${fmtS(until)}`;
      else text = `until ${fmtS(until)} (${fmtS(until - now)} left)`;
      out.textContent = text;
      button.disabled = !!this.finished || now > until || !open;
    }

    renderActive() {
      if (this.closed) return;
      this.renderInjectWindow();
      const now = this.tNow + (this.finished ? 0 : (Date.now() - this.tNowAt) / 1000);
      const items = [...this.active.entries()].map(([name, a]) => {
        const left = a.for_s != null ? Math.max(0, a.start + a.for_s - now) : null;
        return el("li", { class: "k-fault" }, this.blind ? "a fault" : name,
          left != null ? el("span", { class: "countdown" }, ` ${left.toFixed(0)} s left`) : el("span", { class: "dim" }, " (until reverted)"));
      });
      this.activeEl.replaceChildren(...(items.length ? items : [el("li", { class: "dim" }, "none")]));
    }

    // A command: pending until an event satisfies `confirm`; refused if the API says so.
    async command(st, path, body, confirm) {
      const p = { st, confirm };
      this.pending.push(p);
      setStatus(st, "pending", "pending…");
      try {
        await api("POST", "/v1/runs/" + encodeURIComponent(this.id) + path, body);
      } catch (e) {
        this.pending.splice(this.pending.indexOf(p), 1);
        setStatus(st, "bad", (e.code ? e.code + ": " : "") + e.message);
      }
    }

    // The faults a mark can be about: the active ones first, then the others injected, the most
    // recent first. The marks the instructor can move, likewise.
    offerFaults() {
      const recent = [...this.injected].reverse();
      const names = [...recent.filter((f) => this.active.has(f)), ...recent.filter((f) => !this.active.has(f))];
      for (const sel of this.faultPickers) {
        const kept = sel.value;
        const options = sel.id === "move-mark" ?
          [...this.marks].reverse().map((m) => el("option", { value: String(m.id) }, `${m.id}. ${m.kind} (${m.author}) for ${m.fault}`)) :
          names.map((f) => el("option", { value: f }, f + (this.active.has(f) ? " (active)" : "")));
        sel.replaceChildren(...options);
        if (kept && [...sel.options].some((o) => o.value === kept) && sel.dataset.touched) sel.value = kept;
      }
    }

    faultPicker(id) {
      const sel = el("select", { id, onchange: () => { sel.dataset.touched = "1"; } });
      this.faultPickers.push(sel);
      return sel;
    }

    renderControls() {
      if (this.info.state !== "running" || this.present) return;
      const rows = [];
      this.faultPickers = [];
      if (role === "instructor") {
        const manual = this.sc ? this.sc.manual : [];
        // Only a scenario with a manual catalog has something to inject from the page.
        if (manual.length) {
          const pick = el("select", { id: "fault-pick", onchange: () => this.renderInjectWindow() }, manual.map((m) => el("option", { value: m.name }, `${m.number}. ${m.name}: ${m.summary}`)));
          const st1 = status("inject");
          this.injectWindow = el("span", { id: "inject-window", class: "dim" });
          rows.push(el("div", { class: "row" }, el("b", {}, "Inject"), pick,
            el("button", { id: "inject", onclick: () => {
              const f = pick.value;
              this.command(st1, "/inject", { fault: f }, (ev) => (ev.type === "fault-injected" || ev.type === "fault-inject-failed") && ev.fault.split("#")[0] === f);
            } }, "Inject"), this.injectWindow, st1));
        }
        const rate = el("input", { id: "spike-rate", type: "number", min: 1, value: this.sc ? Math.round(this.sc.rate * 3) : 100, style: "width:6em" });
        const secs = el("input", { id: "spike-secs", type: "number", min: 1, value: 10, style: "width:5em" });
        const st2 = status("spike");
        rows.push(el("div", { class: "row" }, el("b", {}, "Spike"), rate, "requests/s for", secs, "s",
          el("button", { id: "spike", onclick: () => {
            const r = Number(rate.value);
            this.command(st2, "/spike", { rate: r, duration: Number(secs.value) }, (ev) => ev.type === "stage-started" && ev.rate === r);
          } }, "Spike"), st2));
        // A mark credited to the wrong fault is moved to the right one.
        const which = this.faultPicker("move-mark"), to = this.faultPicker("move-to"), stm = status("move");
        rows.push(el("div", { class: "row" }, el("b", {}, "Move mark"), which, "to", to,
          el("button", { id: "move", onclick: () => {
            const id = Number(which.value), f = to.value;
            if (!id || !f) return setStatus(stm, "bad", "no mark or no fault to move it to");
            this.command(stm, "/marks/" + id, { fault: f }, (ev) => ev.type === "mark-moved" && ev.id === id);
          } }, "Move"), stm));
        // Stopping ends the game day for the whole class: it takes a second, deliberate click.
        const st3 = status("stop");
        const sure = el("span", { id: "stop-confirm", hidden: true }, "Stop the run for everyone and revert every fault? ",
          el("button", { id: "stop-yes", class: "danger", onclick: () => {
            sure.hidden = true;
            this.command(st3, "/stop", { reason: "stopped by the instructor from the game-day page" }, (ev) => ev.type === "cancelled" || ev.type === "run-finished");
          } }, "Yes, stop"), " ",
          el("button", { id: "stop-no", onclick: () => { sure.hidden = true; } }, "No, go on"));
        rows.push(el("div", { class: "row" }, el("button", { id: "stop", onclick: () => { sure.hidden = false; } }, "Stop the run…"), sure, st3));
      }
      if (role === "participant") {
        const name = el("input", { id: "mark-name", placeholder: "your name", value: localStorage.getItem("siege-name") || "" });
        const about = this.faultPicker("mark-fault");
        const mark = (kind, st) => () => {
          const author = name.value.trim();
          if (!author) return setStatus(st, "bad", "write your name first: a mark says who made it");
          const fault = about.value;
          if (!fault) return setStatus(st, "bad", "no fault has been injected yet");
          localStorage.setItem("siege-name", author);
          this.command(st, "/marks", { kind, author, fault }, (ev) => ev.type === "mark-added" && ev.mark.kind === kind && ev.mark.author === author && ev.mark.fault === fault);
        };
        const sd = status("detected"), sm = status("mitigated");
        rows.push(el("div", { class: "row" }, name, "about", about,
          el("button", { id: "detected", class: "big", onclick: mark("detected", sd) }, "Detected"),
          el("button", { id: "mitigated", class: "big", onclick: mark("mitigated", sm) }, "Mitigated")),
        // Below the buttons, so that a confirmation never moves them.
        el("div", { class: "row statuses" }, sd, sm));
      }
      if (role !== "anonymous") {
        const text = el("input", { id: "note-text", placeholder: "a note for the timeline", style: "width:24em" });
        const st = status("note");
        rows.push(el("div", { class: "row" }, text, el("button", { id: "note", onclick: () => {
          const t = text.value.trim();
          if (!t) return;
          const author = role === "instructor" ? "instructor" : (localStorage.getItem("siege-name") || "").trim();
          if (!author) return setStatus(st, "bad", "write your name first: a note says who wrote it");
          text.value = "";
          this.command(st, "/marks", { kind: "note", author, text: t }, (ev) => ev.type === "mark-added" && ev.mark.kind === "note" && ev.mark.text === t);
        } }, "Add note"), st));
      }
      // A viewer (no token) has no control: no empty box either.
      this.controls.replaceChildren(...(rows.length ? [el("div", { class: "panel", id: "controls" }, rows)] : []));
      this.offerFaults();
    }

    // The finished run's report: measured and human times, marks, the report files.
    async loadReport() {
      let info = this.info;
      for (let i = 0; i < 40 && !this.closed; i++) {
        info = await api("GET", "/v1/runs/" + encodeURIComponent(this.id));
        // A run's files are stored before its end (a run interrupted by a killed daemon has none).
        if (info.state !== "running") break;
        await new Promise((r) => setTimeout(r, 500));
      }
      if (this.closed) return;
      this.info = info;
      const rec = info.record || {};
      const kids = [el("h2", {}, "Report")];
      kids.push(el("p", {}, "Measured: time to detect ", el("b", {}, fmtS(info.time_to_detect_s)), ", time to restore after the last disruption ended ", el("b", {}, fmtS(info.mttr_s))));
      // Each fault's outage and time to restore, as report.md's table has them.
      const measured = (rec.faults || []).filter((f) => f.effect && f.injected_s != null);
      const outage = (e) => (e.outage_s != null ? fmtS(e.outage_s) : e.already_broken ? "–" : e.broken_s == null ? "none" : "not restored");
      const broke = (e) => (e.already_broken ? "already broken" : e.broken_s == null ? "never" : `t+${fmtS(e.broken_s)}`);
      const effects = measured.map((f) => el("tr", {}, el("td", {}, f.name), el("td", {}, `t+${fmtS(f.injected_s)}`), el("td", {}, fmtS(f.effect.detected_after_s)), el("td", {}, broke(f.effect)), el("td", {}, outage(f.effect)), el("td", {}, f.effect.time_to_restore_s == null ? "n/a" : fmtS(f.effect.time_to_restore_s))));
      if (effects.length) kids.push(el("h3", {}, "Detection, outage and time to restore per fault"), el("table", { id: "fault-times" }, el("tr", {}, ["fault", "injected", "detected after", "broken", "outage", "restored after its disruption ended"].map((h) => el("th", {}, h))), effects));
      const rows = [];
      const since = (f, t) => (t == null ? null : Math.max(0, t - f.injected_s));
      for (const f of rec.faults || []) {
        if (!(f.human || []).length) continue;
        // siege's own row first: when the steady state broke and held again, after the injection.
        if (f.effect) rows.push(el("tr", { class: "siege" }, el("td", {}, f.name), el("td", {}, "siege (measured)"), el("td", {}, fmtS(f.effect.detected_after_s)), el("td", {}, fmtS(since(f, f.effect.restored_s)))));
        for (const h of f.human) rows.push(el("tr", {}, el("td", {}, f.name), el("td", {}, h.author), el("td", {}, fmtS(h.detected_s)), el("td", {}, fmtS(h.mitigated_s))));
      }
      if (rows.length) kids.push(el("h3", {}, "Human times"), el("table", { id: "human-times" }, el("tr", {}, ["fault", "who", "detected after", "mitigated / restored after"].map((h) => el("th", {}, h))), rows));
      const marks = rec.marks || [];
      if (marks.length) kids.push(el("h3", {}, "Marks"), el("ul", { id: "marks" }, marks.map((m) => el("li", {}, `${Number(m.t_s).toFixed(1)} s: ${m.kind} (${m.author})${m.fault ? " for " + m.fault : ""}${m.moved_from ? " (moved from " + m.moved_from + ")" : ""}${m.text ? ": " + m.text : ""}`))));
      const files = (info.files || []).filter((f) => /^(report\.(md|json)|junit\.xml)$/.test(f)).sort();
      // report.md as a page, with its charts: the debrief as the class reads it.
      if (files.includes("report.md")) files.unshift("report.html");
      const links = [];
      for (const f of files) links.push(el("a", { href: await withReadToken(this.id, `/v1/runs/${encodeURIComponent(this.id)}/report/${f}`).catch(() => "#"), target: "_blank" }, f), " ");
      if (this.closed) return;
      kids.push(el("p", { id: "files" }, links));
      this.report.replaceChildren(...kids);
      this.renderHead();
      // A blind run's faults are named once it ended: shown again from its events.
      if (this.hid) route().catch((e) => S.errors.push(String(e.message)));
    }
  }
  const TYPES = ["run-started", "backend-ready", "phase-changed", "load-started", "baseline-checked", "stage-started", "second-closed",
    "fault-injecting", "fault-injected", "fault-inject-failed", "fault-reverted", "fault-settled", "fault-revert-failed",
    "steady-state-broken", "steady-state-restored", "cancelled", "service-event", "note", "mark-added", "mark-moved", "run-finished"];

  async function init() {
    const who = await api("GET", "/v1/whoami");
    role = who.role;
    participantToken = who.participant_token || null;
    $("role").textContent = role === "anonymous" ? "viewer (no token: read only)" : role;
    scenarios = (await api("GET", "/v1/scenarios")).scenarios;
    window.addEventListener("hashchange", () => route().catch((e) => S.errors.push(String(e.message))));
    await route();
  }
  init().catch((e) => { S.errors.push(String(e.message)); $("main").replaceChildren(el("p", { class: "bad" }, "cannot reach the daemon: " + e.message)); });
})();
