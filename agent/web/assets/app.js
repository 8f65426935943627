// pcm web page: a hash-routed page over the agent's API (/web/v1 = /v1)
// and its event stream (/web/events). No framework, no build step.
"use strict";

// ---- state and helpers ----------------------------------------------------

const state = { frameworks: {}, status: null, resources: [], peers: [], tasks: [], ledger: { head: 0 }, members: null, metrics: [], problems: [] };
let view = null; // { name, update(part), leave() }

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, ...kids);
  return el;
}
function append(el, ...kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}
const SVGNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  append(el, ...kids);
  return el;
}
function fill(el, ...kids) { el.replaceChildren(); return append(el, ...kids); }
const $ = (sel) => document.querySelector(sel);

// api calls /web/v1 (the agent's /v1); errors carry the API's message.
async function api(path, opts) {
  return call("/web/v1" + path, opts);
}
async function call(url, opts = {}) {
  const init = { method: opts.method || "GET", headers: { "Accept": "application/json" } };
  if (init.method !== "GET") { init.headers["X-PCM-Web"] = "1"; init.body = opts.body; }
  const r = await fetch(url, init);
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
  if (!r.ok) {
    if (r.status === 401) location.href = "/login";
    throw new Error((body && body.error) || `${init.method} ${url}: HTTP ${r.status}`);
  }
  return body;
}

const short = (id) => !id ? "" : id.length > 14 ? id.slice(0, 6) + "…" + id.slice(-6) : id;
function peerLabel(id) {
  if (!id) return "—";
  if (state.status && id === state.status.peer_id) return short(id) + " (this agent)";
  return short(id);
}
function fwName(id) { const f = state.frameworks[id]; return f ? `${f.name} ${f.version}` : short(id); }
async function loadFrameworks() {
  try { for (const f of (await api("/frameworks")) || []) state.frameworks[f.id] = f; } catch (e) { /* shown where the list is used */ }
}
// shortIds shortens the peer ids inside a message.
const shortIds = (text) => String(text || "").replace(/12D3KooW[1-9A-HJ-NP-Za-km-z]{44}/g, (id) => short(id));
function peerCell(id) { return h("span", { class: "mono", title: id || "" }, peerLabel(id)); }
function ago(t) {
  if (!t) return "—";
  const d = (Date.now() - new Date(t).getTime()) / 1000;
  if (d < 0) return "in " + dur(-d);
  return dur(d) + " ago";
}
function dur(sec) {
  if (sec < 1) return Math.round(sec * 1000) + " ms";
  if (sec < 90) return Math.round(sec) + " s";
  if (sec < 5400) return Math.round(sec / 60) + " min";
  return (sec / 3600).toFixed(1) + " h";
}
const time = (t) => t ? new Date(t).toLocaleTimeString() : "—";
const stamp = (t) => t ? new Date(t).toLocaleString() : "—";
const money = (m) => (m === undefined || m === null) ? "—" : (m / 1e6).toLocaleString(undefined, { maximumFractionDigits: 6 });
const badge = (st) => h("span", { class: "badge " + (st || "") }, st || "unknown");
const FINAL = ["succeeded", "failed", "cancelled", "expired"];
function errorBox(err) { return h("div", { class: "error", role: "alert" }, String(err && err.message || err)); }
function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty || "None.");
  for (const row of rows) [...row.children].forEach((td, i) => td.setAttribute("data-label", (headers[i] || "").replace(/^~/, "")));
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", class: x.startsWith("~") ? "hide-sm" : null }, x.replace(/^~/, ""))))),
    h("tbody", {}, rows)));
}
function kv(pairs) {
  const none = (v) => v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length);
  return h("dl", { class: "kv" }, pairs.filter((p) => p).map(([k, v]) => [h("dt", {}, k), h("dd", {}, none(v) ? "—" : v)]));
}
function fmtQty(k, v) {
  if (k.startsWith("memory") || k.startsWith("storage")) return v >= 1024 ? (v / 1024).toFixed(v % 1024 ? 1 : 0) + " GiB" : v + " MiB";
  return (Math.round(v * 100) / 100).toString();
}

// ---- live updates ----------------------------------------------------------

function connect() {
  const es = new EventSource("/web/events");
  const live = $("#live");
  es.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  es.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
  for (const part of ["status", "resources", "peers", "tasks", "ledger", "members", "metrics", "problem"]) {
    es.addEventListener(part, (ev) => {
      const data = JSON.parse(ev.data);
      if (part === "problem") { state.problems = data; showProblems(); return; }
      if (part === "tasks") { state.tasks = data.tasks || []; state.taskTotal = data.total; } else state[part] = data;
      if (part === "status") fill($("#me"), h("span", { title: data.peer_id }, short(data.peer_id)), " · v", data.version);
      if (view && view.update) view.update(part);
    });
  }
}
function showProblems() {
  const el = $("#problems");
  el.hidden = !state.problems.length;
  fill(el, state.problems.map((p) => h("div", {}, "⚠ ", p)));
}

// ---- router ----------------------------------------------------------------

// routes is a function: the views of pages.js load after this file.
const routes = () => [
  [/^#\/mesh$/, meshView], [/^#\/tasks$/, tasksView], [/^#\/task\/(.+)$/, taskView],
  [/^#\/submit$/, submitView], [/^#\/frameworks$/, frameworksView], [/^#\/framework\/(.+)$/, frameworkView],
  [/^#\/ledger$/, ledgerView], [/^#\/entry\/(.+)$/, entryView],
];
function route() {
  const hash = location.hash || "#/mesh";
  if (view && view.leave) view.leave();
  const main = $("#view");
  main.replaceChildren();
  for (const [re, fn] of routes()) {
    const m = hash.match(re);
    if (m) {
      view = fn(main, ...m.slice(1).map(decodeURIComponent)) || {};
      const top = hash.split("/")[1];
      const nav = { task: "tasks", framework: "frameworks", entry: "ledger" }[top] || top;
      document.querySelectorAll("[data-nav]").forEach((a) => { if (a.dataset.nav === nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current"); });
      document.title = "pcm · " + nav;
      return;
    }
  }
  view = null;
  fill(main, h("h1", {}, "Not found"), h("p", {}, "No page ", h("code", {}, hash), ". ", h("a", { href: "#/mesh" }, "Back to the mesh")));
}

// ---- mesh ------------------------------------------------------------------

function meshView(main) {
  const stats = h("div", { class: "stats" });
  const provs = h("div"), peers = h("div"), members = h("div"), topo = h("div"), charts = h("div");
  append(main, h("h1", {}, "Mesh"), stats,
    h("section", { class: "card", "aria-labelledby": "h-prov" }, h("h2", { id: "h-prov" }, "Providers"), provs),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "h-topo" }, h("h2", { id: "h-topo" }, "Connections, as this agent sees them"), topo),
      h("section", { class: "card", "aria-labelledby": "h-charts" }, h("h2", { id: "h-charts" }, "Placements brokered here"), charts)),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "h-peers" }, h("h2", { id: "h-peers" }, "Connected peers"), peers),
      h("section", { class: "card", "aria-labelledby": "h-mem" }, h("h2", { id: "h-mem" }, "Ledger members"), members)));
  const draw = {
    stats: () => {
      const running = state.tasks.filter((t) => t.state === "running").length;
      const m = state.members;
      fill(stats,
        stat(state.resources.length, "providers"), stat(state.peers.length, "connected peers"),
        stat(state.tasks.length, "tasks known"), stat(running, "running now"),
        stat(state.ledger.head, "ledger head"), stat(m && m.leader ? h("span", { class: "mono id", title: m.leader }, short(m.leader)) : "—", "ledger leader"));
    },
    provs: () => fill(provs, providersTable()),
    peers: () => fill(peers, table(["Peer", "Direction", "Latency", "~Address", "Provider"], state.peers.map((p) => h("tr", {},
      h("td", {}, peerCell(p.id)), h("td", {}, p.direction), h("td", { class: "num" }, Number(p.latency_ms || 0).toFixed(1) + " ms"),
      h("td", { class: "mono small hide-sm" }, (p.addrs || [])[0] || ""), h("td", {}, p.provider ? "yes" : "no"))), "Not connected to anyone.")),
    members: () => fill(members, membersBlock()),
    topo: () => fill(topo, topology()),
    charts: () => fill(charts, placementCharts()),
  };
  const all = () => Object.values(draw).forEach((f) => f());
  all();
  const ages = setInterval(draw.provs, 5000);
  return {
    update(part) {
      ({ status: all, resources: () => { draw.stats(); draw.provs(); draw.topo(); }, peers: () => { draw.stats(); draw.peers(); draw.topo(); draw.provs(); },
        tasks: draw.stats, ledger: draw.stats, members: () => { draw.stats(); draw.members(); draw.topo(); }, metrics: draw.charts })[part]?.();
    },
    leave() { clearInterval(ages); },
  };
}
function stat(n, label) { return h("div", { class: "stat" }, h("div", { class: "n" }, n), h("div", { class: "l" }, label)); }

function providersTable() {
  const connected = new Set(state.peers.map((p) => p.id));
  const me = state.status && state.status.peer_id;
  return table(["Provider", "Region", "Zone", "Drivers", "~Labels", "Frameworks", "Capacity (free of total)", "Advert", "Reach"],
    state.resources.map((e) => {
      const a = e.advert, attrs = { ...(a.attrs || {}) };
      const region = attrs.region, zone = attrs.zone;
      delete attrs.region; delete attrs.zone;
      const reach = a.provider === me ? "this agent" : connected.has(a.provider) ? "direct" : "via mesh";
      return h("tr", { "data-provider": a.provider },
        h("td", {}, peerCell(a.provider)), h("td", {}, region || "—"), h("td", {}, zone || "—"),
        h("td", {}, (a.drivers || []).map((d) => h("span", { class: "chip" }, d.name))),
        h("td", { class: "hide-sm" }, Object.entries(attrs).map(([k, v]) => h("span", { class: "chip" }, k + "=" + v))),
        h("td", {}, (a.frameworks || []).map((f) => h("a", { class: "chip", href: "#/framework/" + encodeURIComponent(f), title: f }, fwName(f)))),
        h("td", {}, Object.keys(a.total || {}).filter((k) => !k.includes(":")).sort().map((k) => capBar(k, (a.free || {})[k] || 0, a.total[k]))),
        h("td", { class: "small", title: "advert seq " + a.seq }, ago(a.time)),
        h("td", {}, h("span", { class: "badge " + (reach === "via mesh" ? "warn" : "ok") }, reach)));
    }), "No provider adverts yet.");
}
function capBar(k, free, total) {
  const used = total > 0 ? Math.max(0, Math.min(1, (total - free) / total)) : 0;
  return h("div", { class: "bar", title: `${k}: ${fmtQty(k, free)} free of ${fmtQty(k, total)}` },
    s("svg", { width: 90, height: 10, role: "img", "aria-label": `${k} ${Math.round(used * 100)}% used` },
      s("rect", { class: "bg", x: 0, y: 0, width: 90, height: 10, rx: 3 }),
      s("rect", { class: "fg" + (used > 0.85 ? " hot" : ""), x: 0, y: 0, width: Math.round(90 * used), height: 10, rx: 3 })),
    `${k} ${fmtQty(k, free)}/${fmtQty(k, total)}`);
}
function membersBlock() {
  const m = state.members;
  if (!m) return h("p", { class: "muted" }, "Not known yet.");
  const role = new Map();
  (m.voters || []).forEach((v) => role.set(v, "voter"));
  (m.non_voters || []).forEach((v) => role.set(v, "non-voter"));
  const reps = new Map((m.replicas || []).map((r) => [r.id, r]));
  return table(["Member", "Role", "Index", "State"], [...role.keys()].map((id) => {
    const r = reps.get(id) || {};
    return h("tr", {}, h("td", {}, peerCell(id)),
      h("td", {}, role.get(id), " ", id === m.leader ? h("span", { class: "badge leader" }, "leader") : ""),
      h("td", { class: "num" }, r.index ?? "—"), h("td", { class: "small" }, r.error ? h("span", { class: "badge bad", title: r.error }, "unreachable") : "ok"));
  }), "No members.");
}
function topology() {
  const me = state.status && state.status.peer_id;
  if (!me) return h("p", { class: "muted" }, "Waiting for the agent's status…");
  const connected = state.peers.map((p) => p.id);
  const others = state.resources.map((e) => e.advert.provider).filter((id) => id !== me && !connected.includes(id));
  const nodes = [...connected, ...others];
  const W = 420, H = 260, cx = W / 2, cy = H / 2, R = Math.min(W, H) / 2 - 34;
  const svg = s("svg", { class: "topo", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": `this agent, ${connected.length} connected peers, ${others.length} providers reached through the mesh` });
  const pos = nodes.map((id, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, nodes.length);
    return [id, cx + R * Math.cos(a), cy + R * Math.sin(a)];
  });
  for (const [id, x, y] of pos) svg.append(s("line", { class: "edge" + (connected.includes(id) ? "" : " far"), x1: cx, y1: cy, x2: x, y2: y }));
  svg.append(s("circle", { class: "self", cx, cy, r: 14 }), s("text", { x: cx, y: cy + 28, "text-anchor": "middle" }, "this agent"));
  for (const [id, x, y] of pos) {
    svg.append(s("circle", { class: connected.includes(id) ? "peer" : "prov", cx: x, cy: y, r: 10 }, s("title", {}, id)),
      s("text", { x, y: y + (y < cy ? -15 : 24), "text-anchor": "middle" }, short(id)));
  }
  return h("div", {}, svg, h("p", { class: "small muted" }, "Solid: a direct connection. Dashed: a provider known from its adverts only."));
}
function placementCharts() {
  const pts = state.metrics || [];
  if (pts.length < 2) return h("p", { class: "muted" }, "Sampling the agent's metrics every 2 s while this page is open; the charts fill in shortly.");
  return h("div", {},
    h("div", { class: "legend" }, h("span", { class: "k1" }, "placements/s")),
    lineChart(pts, [(p) => p.rate], "/s"),
    h("div", { class: "legend" }, h("span", { class: "k1" }, "p50 latency"), h("span", { class: "k2" }, "p95 latency")),
    lineChart(pts.filter((p) => p.rate > 0), [(p) => p.p50 * 1000, (p) => p.p95 * 1000], " ms", "No placements in the window yet."));
}
function lineChart(pts, series, unit, empty) {
  if (!pts.length) return h("p", { class: "small muted" }, empty);
  const W = 420, H = 120, L = 58, B = 18, T = 8;
  const t0 = new Date(pts[0].t).getTime() - (pts.length === 1 ? 1000 : 0), t1 = new Date(pts[pts.length - 1].t).getTime();
  const max = Math.max(1e-9, ...pts.flatMap((p) => series.map((f) => f(p)))) * 1.1;
  const x = (p) => L + ((new Date(p.t).getTime() - t0) / Math.max(1, t1 - t0)) * (W - L - 6);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": "chart" });
  for (const f of [0, 0.5, 1]) {
    svg.append(s("line", { class: "grid", x1: L, x2: W - 6, y1: y(max * f / 1.1), y2: y(max * f / 1.1) }),
      s("text", { x: L - 4, y: y(max * f / 1.1) + 4, "text-anchor": "end" }, fmtNum(max * f / 1.1) + (f === 1 ? unit : "")));
  }
  svg.append(s("line", { class: "axis", x1: L, x2: W - 6, y1: H - B, y2: H - B }),
    s("text", { x: L, y: H - 4 }, time(pts[0].t)), s("text", { x: W - 6, y: H - 4, "text-anchor": "end" }, time(pts[pts.length - 1].t)));
  series.forEach((f, i) => {
    svg.append(s("polyline", { class: "l" + (i + 1), points: pts.map((p) => `${x(p).toFixed(1)},${y(f(p)).toFixed(1)}`).join(" ") }));
    if (pts.length < 30) pts.forEach((p) => svg.append(s("circle", { class: "d" + (i + 1), cx: x(p).toFixed(1), cy: y(f(p)).toFixed(1), r: 2.5 })));
  });
  return svg;
}
const fmtNum = (v) => v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);

// ---- tasks -----------------------------------------------------------------

function tasksView(main) {
  const f = { state: "", provider: "", framework: "", submitter: "" };
  const sel = (name, label) => h("div", {}, h("label", { for: "f-" + name }, label),
    h("select", { id: "f-" + name, onchange: (e) => { f[name] = e.target.value; draw(); } }, h("option", { value: "" }, "any")));
  const box = h("div"), count = h("p", { class: "small muted" });
  append(main, h("h1", {}, "Tasks"),
    h("p", { class: "muted" }, "Every task the ledger knows, across the mesh, plus the ones this agent brokers that are not placed yet."),
    h("div", { class: "card" }, h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      sel("state", "State"), sel("provider", "Provider"), sel("framework", "Framework"), sel("submitter", "Submitter")), count, box));
  function options() {
    for (const name of ["state", "provider", "framework", "submitter"]) {
      const el = $("#f-" + name), vals = [...new Set(state.tasks.map((t) => t[name]).filter((v) => v))].sort();
      const cur = el.value;
      fill(el, h("option", { value: "" }, "any"), vals.map((v) => h("option", { value: v }, name === "state" ? v : name === "framework" ? fwName(v) : peerLabelOrName(v))));
      el.value = vals.includes(cur) ? cur : "";
    }
  }
  function draw() {
    options();
    const rows = state.tasks.filter((t) => Object.entries(f).every(([k, v]) => !v || t[k] === v));
    fill(count, `${rows.length} of ${state.tasks.length} tasks`, state.taskTotal > state.tasks.length ? ` (the newest ${state.tasks.length} of ${state.taskTotal})` : "");
    fill(box, table(["Task", "Name", "State", "~Broker", "Provider", "~Framework", "~Submitter", "Updated"], rows.map((t) => h("tr", { "data-task": t.id },
      h("td", {}, h("a", { class: "mono", href: "#/task/" + encodeURIComponent(t.id) }, short(t.id))),
      h("td", {}, t.name || h("span", { class: "muted" }, "—")), h("td", {}, badge(t.state)),
      h("td", { class: "hide-sm" }, peerCell(t.broker)), h("td", {}, t.provider ? peerCell(t.provider) : "—"),
      h("td", { class: "hide-sm" }, t.framework ? h("span", { title: t.framework }, fwName(t.framework)) : "—"),
      h("td", { class: "hide-sm" }, t.submitter ? peerCell(t.submitter) : h("span", { class: "muted", title: "only the broker knows the submitter" }, "—")),
      h("td", { class: "small" }, ago(t.updated || t.submitted)))), "No tasks match."));
  }
  draw();
  return { update(part) { if (part === "tasks" || part === "status") draw(); } };
}
function peerLabelOrName(v) { return v.length > 30 ? peerLabel(v) : v; }

function taskView(main, id) {
  const head = h("div"), body = h("div"), err = h("div"), logs = h("pre", { class: "logs", id: "logs", tabindex: "0", "aria-label": "task output" });
  const logNote = h("p", { class: "small muted" });
  const actions = h("div", { class: "actions" });
  append(main, h("p", {}, h("a", { href: "#/tasks" }, "← Tasks")), h("h1", {}, "Task ", h("span", { class: "mono" }, id)), err, head,
    h("section", { class: "card", "aria-labelledby": "h-logs" }, h("h2", { id: "h-logs" }, "Output"), logNote, logs), body);
  const entries = h("div");
  let task = null, seen = "", logCtl = null, logState = "idle", gone = false;
  async function load() {
    try {
      task = await api("/tasks/" + encodeURIComponent(id));
      fill(err);
    } catch (e) {
      const known = state.tasks.find((t) => t.id === id);
      fill(err, errorBox(e));
      if (known && !task) task = { id, state: known.state, broker: known.broker, provider: known.provider, framework: known.framework, attempt: known.attempt, history: [], rounds: [], partial: true };
    }
    if (gone) return;
    render();
    startLogs();
  }
  function render() {
    if (!task) { fill(head, h("p", { class: "muted" }, "Loading…")); return; }
    const doc = task.document || {};
    const final = FINAL.includes(task.state);
    fill(actions, final ? null : h("button", { class: "danger", id: "cancel", onclick: cancel }, "Cancel task"), h("span", { id: "cancel-result", role: "status" }));
    fill(head, h("section", { class: "card" }, h("div", { class: "grid" },
      kv([["State", h("span", { id: "task-state" }, badge(task.state))], ["Name", task.name], ["Message", shortIds(task.message)],
        ["Broker", peerCell(task.broker)], ["Provider", task.provider ? peerCell(task.provider) : "—"], ["Submitter", task.submitter ? peerCell(task.submitter) : "—"]]),
      kv([["Framework", task.framework ? h("a", { href: "#/framework/" + encodeURIComponent(task.framework), title: task.framework }, fwName(task.framework)) : "—"], ["Attempt", task.attempt], ["Retries left", task.retries_left],
        ["Price", task.price ? money(task.price) + " /h" : "—"], ["Settled", task.settled ? money(task.settled) : "—"],
        ["Exit code", final ? String(task.exit_code ?? 0) : "—"], ["Deadline", stamp(task.deadline)]])), actions));
    const rounds = task.rounds || [];
    fill(body,
      h("div", { class: "grid" },
        h("section", { class: "card", "aria-labelledby": "h-tl" }, h("h2", { id: "h-tl" }, "Timeline"),
          task.history && task.history.length ? h("ol", { class: "timeline" }, task.history.map((x) => h("li", {}, badge(x.state), " ", h("span", { class: "small muted" }, time(x.time)), x.note ? h("div", { class: "small" }, shortIds(x.note)) : null)))
            : h("p", { class: "muted" }, "Only the broker keeps the timeline.")),
        h("section", { class: "card", "aria-labelledby": "h-rounds" }, h("h2", { id: "h-rounds" }, `Negotiation (${rounds.length} round${rounds.length === 1 ? "" : "s"})`),
          rounds.length ? rounds.map(roundBlock) : h("p", { class: "muted" }, "No rounds recorded here."))),
      h("section", { class: "card", "aria-labelledby": "h-entries" }, h("h2", { id: "h-entries" }, "In the ledger"), entries),
      h("section", { class: "card", "aria-labelledby": "h-doc" }, h("h2", { id: "h-doc" }, "Document"), h("pre", { class: "json" }, JSON.stringify(doc, null, 2))));
    api("/ledger/entries?task=" + encodeURIComponent(id)).then((recs) => fill(entries, table(["Index", "Time", "Type", "Concerns", "Signed by"], recs.map((r) => h("tr", {},
      h("td", { class: "num" }, h("a", { href: "#/entry/" + r.index }, r.index)), h("td", { class: "small" }, time(r.time)), h("td", {}, h("span", { class: "badge" }, r.type)),
      h("td", { class: "small" }, concerns(r)), h("td", {}, (r.signatures || []).map((x) => h("div", {}, peerCell(x.signer)))))), "Nothing yet: the agreement is written when the task is placed.")),
    (e) => fill(entries, errorBox(e)));
  }
  async function cancel() {
    const out = $("#cancel-result"), btn = $("#cancel");
    btn.disabled = true;
    fill(out, "cancelling…");
    try {
      const r = await api("/tasks/" + encodeURIComponent(id) + "/cancel", { method: "POST" });
      fill(out, h("span", { class: "badge ok" }, r.status || "cancelling"));
    } catch (e) {
      fill(out, errorBox("Cancel refused: " + e.message));
      btn.disabled = false;
    }
  }
  async function startLogs() {
    if (!task || logState === "streaming" || logState === "done") return;
    // Before the provider starts the attempt there is no output to ask for
    // (asking would only fail).
    if (!["running", "succeeded", "failed", "cancelled", "lost"].includes(task.state)) { fill(logNote, "Output appears here once the task runs."); return; }
    logState = "streaming";
    logCtl = new AbortController();
    fill(logNote, "Streaming from the provider…");
    logs.textContent = "";
    try {
      const r = await fetch("/web/v1/tasks/" + encodeURIComponent(id) + "/logs?follow=1", { signal: logCtl.signal });
      if (!r.ok) {
        let msg = `HTTP ${r.status}`;
        try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
        throw new Error(msg);
      }
      const reader = r.body.getReader(), dec = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const stick = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
        logs.textContent += dec.decode(value, { stream: true });
        if (stick) logs.scrollTop = logs.scrollHeight;
      }
      logState = "done";
      fill(logNote, "End of output.");
    } catch (e) {
      if (gone) return;
      logState = "idle"; // try again on the next change
      fill(logNote, errorBox("Logs: " + e.message));
    }
  }
  load();
  return {
    update(part) {
      if (part !== "tasks") return;
      const t = state.tasks.find((x) => x.id === id);
      const sig = t ? t.state + "/" + t.attempt + "/" + t.settled : "";
      if (sig !== seen) { seen = sig; load(); }
    },
    leave() { gone = true; if (logCtl) logCtl.abort(); },
  };
}
function roundBlock(r) {
  const list = (xs) => h("ul", { class: "errors" }, xs.map((x) => h("li", {}, peerCell(x.provider), ": ", shortIds((x.reasons || []).join("; ")))));
  return h("div", { class: "round" }, h("h3", {}, `Round ${r.n} (attempt ${r.attempt}) `, h("span", { class: "badge " + String(r.outcome || "").split(" ")[0] }, shortIds(r.outcome || "—")), " ", h("span", { class: "small muted" }, time(r.time))),
    kv([["Candidates", (r.candidates || []).length ? (r.candidates || []).map((c) => h("span", { class: "chip mono", title: c }, short(c))) : "none"],
      ["Bids", (r.bids || []).length ? r.bids.map((b) => h("div", {}, peerCell(b.provider), " at ", money(b.price), " /h")) : "none"],
      ["Winner", r.winner ? peerCell(r.winner) : "—"],
      r.ruled_out && r.ruled_out.length ? ["Ruled out", list(r.ruled_out)] : null,
      r.declines && r.declines.length ? ["Declined", list(r.declines)] : null]));
}
