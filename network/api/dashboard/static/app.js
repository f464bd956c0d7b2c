// Local Swarm dashboard: long-polls /v1/dashboard/snapshot and renders it. No build step, no
// library. Every value from the swarm goes through textContent, never innerHTML.
"use strict";

const SNAPSHOT = "/v1/dashboard/snapshot";
const KEY_STORE = "local-swarm-api-key";
const POLL_S = 2; // the node answers at once on a change, else after this many seconds

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "style") el.style.cssText = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const fmt = {
  num: (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits)),
  int: (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en")),
  ago: (s) => (s === null || s === undefined ? "never" : `${s.toFixed(1)} s ago`),
  time: (t) => new Date(t * 1000).toLocaleTimeString(),
  ms: (v) => (v === null || v === undefined ? "–" : v < 1000 ? `${v.toFixed(0)} ms`
                                                      : `${(v / 1000).toFixed(2)} s`),
};

function cell(label, content, cls) {
  return h("td", { "data-label": label, class: cls }, content);
}

function loadBar(load) {
  if (load === null || load === undefined) return "–";
  const pct = Math.max(0, Math.min(1, load)) * 100;
  return h("span", {}, h("span", { class: "bar" }, h("i", { style: `width:${pct}%` })),
           `${pct.toFixed(0)}%`);
}

function renderNodes(snap) {
  const body = document.querySelector("#nodes tbody");
  const rows = snap.nodes.map((n) => {
    const state = n.self ? "self" : n.state;
    const role = n.coordinator ? h("span", { class: "pill coord" }, "coordinator")
                               : (n.self && snap.role ? snap.role : "member");
    return h("tr", { "data-node": n.node_id, "data-state": n.self ? "alive" : n.state,
                     "data-coordinator": n.coordinator ? "yes" : "no",
                     class: n.state === "dead" ? "dead" : null },
      cell("node", [n.node_id, n.self ? h("span", { class: "muted" }, " (this node)") : null]),
      cell("role", role),
      cell("state", h("span", { class: `pill state-${state}` }, state)),
      cell("model", n.model || "–"),
      cell("load", loadBar(n.load)),
      cell("tok/s", fmt.num(n.tok_s), "num"),
      cell("tokens", fmt.int(n.tokens), "num"),
      cell("last seen", n.self ? "now" : fmt.ago(n.last_seen_s_ago), "num"));
  });
  body.replaceChildren(...rows);
  const s = snap.summary;
  const coordinator = snap.coordinator ? `coordinator ${snap.coordinator} (term ${snap.term})`
                                       : "no coordinator (single node or electing)";
  document.getElementById("headline").textContent =
    `seen by ${snap.node_id} · ${s.alive} of ${s.nodes} node(s) alive · ${coordinator} · ` +
    `${fmt.num(s.tok_s)} tok/s`;
  const dead = snap.nodes.filter((n) => n.state === "dead").map((n) => n.node_id);
  document.getElementById("nodes-note").textContent = dead.length
    ? `Dead (no heartbeat): ${dead.join(", ")}. They get no work until they answer again.` : "";
}

function renderJoins(snap) {
  // Machines asking to join (network/federation/pairing.py): approve one on this machine with the
  // command shown, once that machine shows the same code.
  const joins = snap.joins || {};
  const items = (joins.requests || []).filter((r) => r.code && r.state !== "offered").map((r) =>
    h("li", { "data-join": r.node_id },
      r.state === "approved"
        ? `${r.name || r.node_id} (${r.node_id}) was approved (code ${r.code}) and is joining`
        : [`${r.name || r.node_id} (${r.node_id}) asks to join; code `, h("b", {}, r.code),
           `; approve with `, h("code", {}, `python main.py peers approve ${r.node_id}`),
           ` once that machine shows the same code`]));
  if (joins.joining && joins.joining.code) {
    items.push(h("li", { "data-join": "self" }, "this machine asks to join swarm ",
                 `${joins.joining.swarm}; code `, h("b", {}, joins.joining.code),
                 ": approve it on one of its members"));
  }
  document.getElementById("joins").replaceChildren(...items);
}

function renderSpans(snap) {
  const box = document.getElementById("spans");
  const spans = snap.spans;
  if (!spans) {
    box.replaceChildren(h("p", { class: "muted" },
      "No span map: the swarm serves whole models (no --spans)."));
    return;
  }
  const n = Math.max(spans.num_blocks, 1);
  const pos = (a, b) => `left:${(a / n) * 100}%;width:${((b - a) / n) * 100}%`;
  const rows = spans.assignments.map((a) => h("div", { class: "spanrow", "data-span": a.node_id },
    h("span", {}, a.node_id),
    h("div", { class: "spanmap" }, h("span", { class: a.live ? null : "down", style: pos(a.start, a.end),
                                                title: `${a.node_id}: blocks ${a.start}–${a.end - 1} (${a.state})` },
                                     `${a.start}–${a.end - 1}`))));
  const coverage = h("div", { class: "spanmap", "data-gaps": spans.gaps.length },
    ...spans.gaps.map(([a, b]) => h("span", { class: "gap", style: pos(a, b),
                                             title: `blocks ${a}–${b - 1}: nobody serves them` },
                                    `gap ${a}–${b - 1}`)));
  const note = spans.gaps.length
    ? h("p", { class: "bad" }, `Coverage gaps (red): ${spans.gaps.map(([a, b]) => `${a}–${b - 1}`).join(", ")}. ` +
        "Requests through spans fail until a node serves them.")
    : h("p", { class: "muted" }, "Every block is served.");
  box.replaceChildren(h("p", { class: "muted" }, `${spans.model}: ${spans.num_blocks} blocks`),
    ...rows, h("div", { class: "spanrow" }, h("span", {}, "coverage"), coverage), note);
}

function renderCandidates(req) {
  if (!req.candidates.length) return null;
  const voting = req.candidates.some((c) => c.votes !== null);
  const scoring = req.candidates.some((c) => c.score !== null);
  return h("table", { class: "cards" },
    h("thead", {}, h("tr", {}, h("th", {}, "candidate"), h("th", {}, "node"), h("th", { class: "num" }, "tokens"),
      h("th", { class: "num" }, "latency"), voting ? h("th", { class: "num" }, "votes") : null,
      scoring ? h("th", { class: "num" }, "score") : null, h("th", {}, "outcome"))),
    h("tbody", {}, req.candidates.map((c) => h("tr", { "data-candidate": c.source },
      cell("candidate", c.source), cell("node", c.node), cell("tokens", fmt.int(c.tokens), "num"),
      cell("latency", fmt.ms(c.latency_ms), "num"),
      voting ? cell("votes", fmt.num(c.votes, 2), "num") : null,
      scoring ? cell("score", fmt.num(c.score, 3), "num") : null,
      cell("outcome", c.winner ? h("span", { class: "win" }, "winner")
                               : c.error ? h("span", { class: "bad" }, c.error)
                               : c.valid ? "valid, outvoted" : "invalid")))));
}

function renderRequests(snap) {
  const box = document.getElementById("requests");
  if (!snap.requests.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No request yet."));
    return;
  }
  box.replaceChildren(...snap.requests.map((r) => h("div", {
      class: r.status >= 400 ? "request failed" : "request", "data-request-id": r.id,
      "data-strategy": r.strategy },
    h("div", { class: "line" },
      h("strong", {}, r.strategy), h("span", {}, `${r.api} ${r.endpoint}`),
      h("span", { class: r.status >= 400 ? "bad" : "muted" }, `HTTP ${r.status}`),
      h("span", { class: "muted" }, fmt.time(r.at)), h("span", {}, fmt.ms(r.duration_ms)),
      h("span", {}, `${fmt.int(r.completion_tokens)} tokens`),
      r.winner ? h("span", {}, "winner ", h("span", { class: "win" }, r.winner)) : null,
      r.forwarded_to ? h("span", {}, `served by ${r.forwarded_to}`) : null,
      r.early_stop ? h("span", { class: "muted" }, "stopped early") : null),
    r.error ? h("div", { class: "bad" }, r.error) : null,
    renderCandidates(r))));
}

function tally(title, rows, columns) {
  return h("div", {}, h("h3", {}, title), h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, ""), columns.map(([label]) => h("th", { class: "num" }, label)))),
    h("tbody", {}, Object.entries(rows).map(([name, v]) => h("tr", { "data-usage": name },
      h("td", {}, name), columns.map(([, key]) => h("td", { class: "num" }, fmt.int(v[key]))))))));
}

function renderUsage(snap) {
  const u = snap.usage;
  document.getElementById("usage").replaceChildren(
    tally("by strategy", u.by_strategy, [["requests", "requests"], ["errors", "errors"],
                                         ["prompt", "prompt_tokens"], ["completion", "completion_tokens"]]),
    tally("tokens by node", u.by_node, [["candidates", "candidates"], ["wins", "wins"], ["tokens", "tokens"]]),
    h("p", { class: "muted" }, `This node's instances generated ${fmt.int(u.generated_tokens)} tokens ` +
      `(for its clients and for peers' votes), at ${fmt.num(u.tok_s)} tok/s.`));
}

function setStatus(kind, text) {
  const el = document.getElementById("status");
  el.dataset.status = kind;
  el.textContent = text;
}

let keyWaiter = null;
function askForKey(message) {
  const form = document.getElementById("keyform");
  form.hidden = false;
  document.getElementById("keyerror").textContent = message || "";
  setStatus("offline", "needs an API key");
  return new Promise((resolve) => { keyWaiter = resolve; });
}

document.getElementById("keyform").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = document.getElementById("key").value.trim();
  if (!key) return;
  localStorage.setItem(KEY_STORE, key);
  document.getElementById("keyform").hidden = true;
  if (keyWaiter) { keyWaiter(); keyWaiter = null; }
});
document.getElementById("forget").addEventListener("click", (event) => {
  event.preventDefault();
  localStorage.removeItem(KEY_STORE);
  location.reload();
});

async function poll() {
  let version = null;
  let backoff = 0.5;
  for (;;) {
    const key = localStorage.getItem(KEY_STORE);
    document.getElementById("forget").hidden = !key;
    const url = version === null ? SNAPSHOT : `${SNAPSHOT}?after=${version}&wait_s=${POLL_S}`;
    try {
      const response = await fetch(url, { headers: key ? { Authorization: `Bearer ${key}` } : {},
                                          cache: "no-store" });
      if (response.status === 401) {
        if (key) localStorage.removeItem(KEY_STORE);
        await askForKey(key ? "That key was refused; try another." : "");
        version = null;
        continue;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const snap = await response.json();
      version = snap.version;
      renderNodes(snap);
      renderJoins(snap);
      renderSpans(snap);
      renderRequests(snap);
      renderUsage(snap);
      setStatus("live", "live");
      backoff = 0.5;
    } catch (error) {
      setStatus("offline", `node unreachable (${error.message}); retrying`);
      version = null;
      await new Promise((resolve) => setTimeout(resolve, backoff * 1000));
      backoff = Math.min(backoff * 2, 8);
    }
  }
}

poll();
