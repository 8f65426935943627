// pcm web page, part two: submit, frameworks, ledger, and the start.
"use strict";

// ---- submit ----------------------------------------------------------------

const EXAMPLE = `# A task document, as for \`pcm-agent submit\` (rules/TASK.md).
name: hello
resources:
  cpu: 500m
  memory: 128Mi
driver: local
command: [sh, -c, 'for i in 1 2 3; do echo line $i; sleep 1; done']
deadline: 10m
`;

function submitView(main) {
  const area = h("textarea", { id: "doc", spellcheck: "false", "aria-describedby": "verdict", "aria-label": "task document (YAML or JSON)" });
  area.value = sessionStorage.getItem("pcm-draft") || EXAMPLE;
  const verdict = h("div", { id: "verdict", role: "status", "aria-live": "polite" });
  const result = h("div", { id: "submit-result" });
  const file = h("input", { type: "file", id: "upload", accept: ".yaml,.yml,.json,text/plain" });
  const button = h("button", { id: "submit", type: "submit" }, "Submit task");
  append(main, h("h1", {}, "Submit a task"),
    h("form", { class: "card", onsubmit: submit },
      h("p", { class: "muted" }, "Paste a task document or upload one. It is checked as you type, with the same field errors as ", h("code", {}, "pcm-agent task validate"), "; this agent brokers it."),
      h("div", { class: "field" }, h("label", { for: "upload" }, "Upload a file"), file),
      h("div", { class: "field" }, h("label", { for: "doc" }, "Task document"), area),
      verdict, h("div", { class: "actions" }, button), result));
  let timer = null, seq = 0;
  async function check() {
    const mine = ++seq;
    sessionStorage.setItem("pcm-draft", area.value);
    try {
      const v = await call("/web/validate", { method: "POST", body: area.value });
      if (mine !== seq) return;
      if (v.valid) fill(verdict, h("div", { class: "okbox" }, "✓ valid", v.name ? ` — ${v.name}` : "", h("span", { class: "small mono" }, "  hash " + short(v.hash))));
      else fill(verdict, h("div", { class: "error", id: "field-errors" }, h("strong", {}, "The document is not valid:"), h("ul", { class: "errors" }, v.text.map((t) => h("li", {}, t)))));
    } catch (e) {
      if (mine === seq) fill(verdict, errorBox(e));
    }
  }
  area.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 250); });
  file.addEventListener("change", async () => {
    if (!file.files.length) return;
    area.value = await file.files[0].text();
    check();
  });
  async function submit(ev) {
    ev.preventDefault();
    button.disabled = true;
    fill(result, h("p", { class: "muted" }, "Submitting…"));
    try {
      const t = await api("/tasks", { method: "POST", body: area.value });
      sessionStorage.removeItem("pcm-draft");
      location.hash = "#/task/" + encodeURIComponent(t.id);
    } catch (e) {
      fill(result, errorBox("Not submitted: " + e.message));
      button.disabled = false;
    }
  }
  check();
  return { leave() { clearTimeout(timer); } };
}

// ---- frameworks --------------------------------------------------------------

function adherents(id) { return state.resources.filter((e) => (e.advert.frameworks || []).includes(id)).map((e) => e.advert.provider); }

function frameworksView(main) {
  const box = h("div");
  append(main, h("h1", {}, "Frameworks"), h("section", { class: "card" }, box));
  let list = null, err = null;
  const draw = () => {
    if (err) return fill(box, errorBox(err));
    if (!list) return fill(box, h("p", { class: "muted" }, "Loading…"));
    fill(box, table(["Framework", "Version", "Id", "Adhered here", "Providers adhering", "~Description"], list.map((f) => h("tr", {},
      h("td", {}, h("a", { href: "#/framework/" + encodeURIComponent(f.id) }, f.name)), h("td", {}, f.version),
      h("td", { class: "mono", title: f.id }, short(f.id)), h("td", {}, f.adhered ? h("span", { class: "badge ok" }, "yes") : "no"),
      h("td", { class: "num" }, adherents(f.id).length), h("td", { class: "hide-sm small" }, f.description || ""))), "No frameworks known."));
  };
  api("/frameworks").then((l) => { list = l || []; list.forEach((f) => { state.frameworks[f.id] = f; }); draw(); }, (e) => { err = e; draw(); });
  draw();
  return { update(part) { if (part === "resources") draw(); } };
}

function frameworkView(main, id) {
  const box = h("div");
  append(main, h("p", {}, h("a", { href: "#/frameworks" }, "← Frameworks")), box);
  let fw = null;
  const draw = () => {
    if (!fw) return;
    const pl = fw.placement || {}, pr = fw.pricing || {}, st = fw.settlement || {}, sla = fw.sla || {};
    const code = (c) => c ? h("pre", { class: "json" }, c) : h("span", { class: "muted" }, "none (everything passes)");
    fill(box, h("h1", {}, fw.name, " ", h("span", { class: "muted" }, fw.version)),
      fw.description ? h("p", {}, fw.description) : null,
      h("div", { class: "grid" },
        h("section", { class: "card" }, h("h2", {}, "Rules"), kv([["Id", h("span", { class: "mono" }, id)],
          ["Operations", (fw.operations || []).map((o) => h("span", { class: "chip" }, o))],
          ["Admission", code(fw.admission)], ["Provider rule", code(fw.provider_rule)]])),
        h("section", { class: "card" }, h("h2", {}, "Placement and settlement"), kv([["Strategy", h("strong", {}, pl.strategy)],
          ["Parameters", Object.entries(pl.params || {}).map(([k, v]) => h("span", { class: "chip" }, k + "=" + v))],
          ["Candidates per round", pl.candidates], ["Bid timeout", pl.bid_timeout],
          ["Settlement", [st.basis, st.minimum ? ", minimum " + st.minimum : "", st.granularity ? ", granularity " + st.granularity : ""].join("")],
          ["SLA", `max start delay ${sla.max_start_delay || "—"}, max retries ${sla.max_retries ?? "—"}`]]))),
      h("div", { class: "grid" },
        h("section", { class: "card" }, h("h2", {}, "Prices ", h("span", { class: "muted small" }, pr.currency || "")),
          table(["Resource", "Fixed", "Min", "Max"], Object.entries(pr.prices || {}).map(([k, p]) => h("tr", {}, h("td", {}, k), h("td", {}, p.fixed || "—"), h("td", {}, p.min || "—"), h("td", {}, p.max || "—"))), "No prices: free.")),
        h("section", { class: "card" }, h("h2", {}, "Resource templates"),
          table(["Name", "Unit", "Min", "Max"], Object.entries(fw.templates || {}).map(([k, t]) => h("tr", {}, h("td", {}, k), h("td", {}, t.unit), h("td", {}, t.min || "—"), h("td", {}, t.max || "—"))), "None."))),
      h("section", { class: "card" }, h("h2", {}, "Providers adhering"), table(["Provider"], adherents(id).map((p) => h("tr", {}, h("td", {}, peerCell(p)))), "No provider advertises this framework.")),
      h("details", { class: "card" }, h("summary", {}, "The document (canonical JSON)"), h("pre", { class: "json" }, JSON.stringify(fw, null, 2))));
  };
  api("/frameworks/" + encodeURIComponent(id)).then((f) => { fw = f; draw(); }, (e) => fill(box, errorBox(e)));
  return { update(part) { if (part === "resources") draw(); } };
}

// ---- ledger ------------------------------------------------------------------

const PAGE = 50;

function ledgerView(main) {
  const q = { type: "", task: "", peer: "", from: 0 };
  let follow = true;
  const rows = h("div"), pager = h("div", { class: "pager" }), verify = h("div", { id: "verify-result", role: "status" });
  const balances = h("div"), members = h("div");
  const input = (name, label, attrs) => h("div", {}, h("label", { for: "l-" + name }, label), h("input", { id: "l-" + name, name, ...attrs }));
  append(main, h("h1", {}, "Ledger"),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "h-verify" }, h("h2", { id: "h-verify" }, "Verify"),
        h("p", { class: "small muted" }, "Recompute this replica's hash chain and every signature."),
        h("button", { id: "verify", onclick: runVerify }, "Verify the ledger"), verify),
      h("section", { class: "card", "aria-labelledby": "h-bal" }, h("h2", { id: "h-bal" }, "Balances"), balances)),
    h("section", { class: "card", "aria-labelledby": "h-entries" }, h("h2", { id: "h-entries" }, "Entries"),
      h("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); apply(); } },
        h("div", {}, h("label", { for: "l-type" }, "Type"), h("select", { id: "l-type", onchange: apply }, ["", "framework", "agreement", "task_event", "settlement", "membership"].map((t) => h("option", { value: t }, t || "any")))),
        input("task", "Task id", { size: 20 }), input("peer", "Peer id", { size: 20 }), h("button", { type: "submit", class: "secondary" }, "Filter")),
      rows, pager),
    h("section", { class: "card", "aria-labelledby": "h-members" }, h("h2", { id: "h-members" }, "Membership"), members));
  function apply() {
    q.type = $("#l-type").value; q.task = $("#l-task").value.trim(); q.peer = $("#l-peer").value.trim();
    follow = true; load();
  }
  async function load() {
    const filtered = q.type || q.task || q.peer;
    if (follow) q.from = filtered ? 1 : Math.max(1, state.ledger.head - PAGE + 1);
    const p = new URLSearchParams({ from: q.from, limit: PAGE });
    for (const k of ["type", "task", "peer"]) if (q[k]) p.set(k, q[k]);
    try {
      const recs = await api("/ledger/entries?" + p);
      fill(rows, table(["Index", "Time", "Type", "~Id", "Concerns", "Signed by"], recs.slice().reverse().map((r) => h("tr", { "data-index": r.index },
        h("td", { class: "num" }, h("a", { href: "#/entry/" + r.index }, r.index)), h("td", { class: "small" }, stamp(r.time)), h("td", {}, h("span", { class: "badge" }, r.type)),
        h("td", { class: "mono small hide-sm", title: r.id }, short(r.id)), h("td", { class: "small" }, concerns(r)),
        h("td", {}, (r.signatures || []).map((x) => h("div", {}, peerCell(x.signer)))))), "No entries match."));
      const last = recs.length ? recs[recs.length - 1].index : q.from;
      fill(pager,
        h("button", { class: "secondary", disabled: q.from <= 1, onclick: () => { follow = false; q.from = Math.max(1, q.from - PAGE); load(); } }, "← Older"),
        h("button", { class: "secondary", disabled: follow || recs.length < PAGE, onclick: () => { follow = false; q.from = last + 1; load(); } }, "Newer →"),
        h("button", { class: "secondary", disabled: follow, onclick: () => { follow = true; load(); } }, "Latest"),
        h("span", { class: "small muted" }, follow ? "following new entries" : `from index ${q.from}`));
    } catch (e) { fill(rows, errorBox(e)); }
  }
  async function drawBalances() {
    try { fill(balances, balanceChart(await api("/ledger/balances"))); } catch (e) { fill(balances, errorBox(e)); }
  }
  async function runVerify() {
    fill(verify, h("p", { class: "muted" }, "Verifying…"));
    try {
      const r = await api("/ledger/verify");
      fill(verify, r.ok ? h("div", { class: "okbox", id: "verify-ok" }, `OK — ${r.entries} entries, chain and signatures check; head ${short(r.head)}`)
        : errorBox(`FAILED at index ${r.first_bad}: ${r.reason}`));
    } catch (e) { fill(verify, errorBox(e)); }
  }
  load(); drawBalances(); fill(members, membersBlock());
  return {
    update(part) {
      if (part === "ledger") { if (follow) load(); drawBalances(); }
      if (part === "members") fill(members, membersBlock());
    },
  };
}
function concerns(r) {
  const p = r.payload || {};
  const bits = [];
  if (p.task_id) bits.push(h("a", { href: "#/task/" + encodeURIComponent(p.task_id), class: "mono" }, short(p.task_id)));
  if (p.event) bits.push(" ", badge(p.event));
  if (p.amount !== undefined) bits.push(" ", money(p.amount));
  if (r.billed) bits.push(" billed ", money(r.billed.amount));
  if (p.provider) bits.push(" → ", peerCell(p.provider));
  if (p.name) bits.push(p.name + " " + (p.version || ""));
  if (p.change) bits.push(p.change + " ", peerCell(p.node));
  if (r.type === "framework") bits.push(h("a", { href: "#/framework/" + encodeURIComponent(r.id) }, fwName(r.id)));
  return bits;
}
function balanceChart(b) {
  const rows = Object.entries(b || {}).sort((x, y) => y[1] - x[1]);
  if (!rows.length) return h("p", { class: "muted" }, "No settlements yet.");
  const W = 460, RH = 22, L = 150, H = rows.length * RH + 8, mid = L + (W - L) / 2;
  const max = Math.max(1, ...rows.map(([, v]) => Math.abs(v)));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": "balances per peer" },
    s("line", { class: "axis", x1: mid, x2: mid, y1: 0, y2: H }));
  rows.forEach(([id, v], i) => {
    const w = (Math.abs(v) / max) * ((W - L) / 2 - 4), y = 4 + i * RH;
    svg.append(s("text", { x: 0, y: y + 14 }, peerLabel(id).replace(" (this agent)", " (here)")),
      s("rect", { class: v >= 0 ? "pos" : "neg", x: v >= 0 ? mid : mid - w, y: y + 3, width: Math.max(1, w), height: RH - 8, rx: 2 }, s("title", {}, `${id}: ${money(v)}`)),
      s("text", { x: v >= 0 ? mid - 4 : mid + 4, y: y + 14, "text-anchor": v >= 0 ? "end" : "start" }, money(v)));
  });
  return h("div", {}, svg, h("p", { class: "small muted" }, "Settlements debit the broker and credit the provider; the balances sum to zero."));
}

function entryView(main, key) {
  const box = h("div");
  append(main, h("p", {}, h("a", { href: "#/ledger" }, "← Ledger")), box);
  api("/ledger/entries/" + encodeURIComponent(key)).then((r) => fill(box,
    h("h1", {}, "Entry ", r.index, " ", h("span", { class: "badge" }, r.type)),
    h("section", { class: "card" }, kv([["Id", h("span", { class: "mono" }, r.id)], ["Time", stamp(r.time)],
      ["Hash", h("span", { class: "mono" }, r.hash)], ["Previous hash", h("span", { class: "mono" }, r.prev_hash)], ["Concerns", concerns(r)]]),
      h("div", { class: "pager" },
        r.index > 1 ? h("a", { href: "#/entry/" + (r.index - 1) }, "← Entry " + (r.index - 1)) : null,
        h("a", { href: "#/entry/" + (r.index + 1) }, "Entry " + (r.index + 1) + " →"))),
    h("section", { class: "card" }, h("h2", {}, "Signatures"),
      table(["Signer", "Signature (Ed25519, base64)"], (r.signatures || []).map((x) => h("tr", {}, h("td", {}, peerCell(x.signer)), h("td", { class: "mono small" }, x.sig))))),
    h("section", { class: "card" }, h("h2", {}, "Payload (the signed bytes, decoded)"), h("pre", { class: "json" }, JSON.stringify(r.payload, null, 2)))),
  (e) => fill(box, errorBox(e)));
}

// ---- start -------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  window.addEventListener("hashchange", () => { route(); $("#view").focus({ preventScroll: true }); });
  $("#logout").addEventListener("click", async () => { await call("/logout", { method: "POST" }); location.href = "/login"; });
  call("/web/session").then((r) => { $("#logout").hidden = !r.login; }, () => {});
  loadFrameworks().then(() => { if (view && view.update) view.update("status"); });
  route();
  connect();
});
