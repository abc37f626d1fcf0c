// ferry's operator dashboard: one ES module, no dependencies, no build step.
//
// Everything comes from one server-sent event stream (`events`): a `snapshot` first (and again
// whenever the server had to skip events for this page, or the stream reconnected), then what
// changes. The page never polls; the only timer redraws the bars of relocations in flight.

const SVG = "http://www.w3.org/2000/svg";
const W = 900, H = 480;
// The hosts' row; links between hosts arc above it, app instances stack below each host.
const HOST_Y = 110, APP_H = 24;

// The phases of a migration, in order, as the source host's report times them.
const PHASES = [
  ["prepare", "prepare_ms"], ["pre_copy", "pre_copy_ms"], ["freeze", "freeze_ms"],
  ["dump", "dump_ms"], ["transfer", "transfer_ms"], ["restore", "restore_ms"],
  ["commit", "commit_ms"], ["lazy_completion", "lazy_completion_ms"], ["cleanup", "cleanup_ms"],
];
const PHASE_LABEL = {
  prepare: "prepare", pre_copy: "pre-copy rounds", freeze: "freeze", dump: "dump",
  transfer: "transfer", restore: "restore", commit: "commit", lazy_completion: "lazy completion",
  cleanup: "cleanup",
};
const FINAL = new Set(["COMPLETED", "FAILED", "ROLLED_BACK", "LOST"]);

const state = {
  offset: 0, // control's clock minus ours
  topology: null,
  hosts: {},
  instances: new Map(),
  relocations: new Map(),
  // Relocation id -> [{phase, since}] as the live phases arrived (a bar in flight).
  history: new Map(),
  notifications: [],
  ues: [],
  bench: [],
};

const $ = (id) => document.getElementById(id);
const now = () => Date.now() + state.offset;

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const fmtMs = (ms) => ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
const fmtMiB = (b) => `${(b / 1048576).toFixed(1)} MiB`;
function fmtTime(ms) {
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}
const shortId = (id) => id.replace(/-0+(\d)/, "-$1");
function instanceName(id) {
  const i = state.instances.get(id);
  return i ? (i.name || i.appDId) : shortId(id);
}

// ---- the map ----

// Cells and UEs on a local flat projection of their coordinates, fitted below the hosts' row.
function projection() {
  const pts = [];
  for (const c of state.topology?.cells ?? []) pts.push([c.latitude, c.longitude, c.radiusM]);
  for (const u of state.ues) if (u.latitude != null) pts.push([u.latitude, u.longitude, 0]);
  if (!pts.length) return null;
  const lat0 = pts.reduce((s, p) => s + p[0], 0) / pts.length;
  const k = Math.cos(lat0 * Math.PI / 180);
  const xy = ([lat, lon]) => [(lon * 111320 * k), -(lat * 110540)];
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const p of pts) {
    const [x, y] = xy(p);
    x0 = Math.min(x0, x - p[2]); x1 = Math.max(x1, x + p[2]);
    y0 = Math.min(y0, y - p[2]); y1 = Math.max(y1, y + p[2]);
  }
  const box = { left: 40, top: 215, width: W - 80, height: H - 215 - 15 };
  const s = Math.min(box.width / Math.max(x1 - x0, 1), box.height / Math.max(y1 - y0, 1));
  const dx = box.left + (box.width - (x1 - x0) * s) / 2, dy = box.top + (box.height - (y1 - y0) * s) / 2;
  return {
    at: (lat, lon) => { const [x, y] = xy([lat, lon]); return [dx + (x - x0) * s, dy + (y - y0) * s]; },
    metres: (m) => m * s,
  };
}

function hostNames() {
  const names = new Set(Object.keys(state.hosts));
  for (const h of state.topology?.hosts ?? []) names.add(h.name);
  return [...names];
}

// Hosts in a row above their cells, in the order of where their cells are, spread apart.
function hostPositions(proj, cellAt) {
  const want = hostNames().map((name) => {
    const xs = (state.topology?.cells ?? []).filter((c) => c.host === name).map((c) => cellAt.get(c.name)[0]);
    return { name, x: xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Infinity };
  });
  want.sort((a, b) => a.x - b.x || a.name.localeCompare(b.name));
  const gap = Math.min(190, (W - 140) / Math.max(want.length - 1, 1));
  const pos = new Map();
  let last = -Infinity;
  want.forEach((h, i) => {
    let x = Number.isFinite(h.x) ? h.x : 70 + i * gap;
    x = Math.max(x, last + gap, 70);
    pos.set(h.name, [x, HOST_Y]);
    last = x;
  });
  // Pulled back left if the row overflows.
  const over = last - (W - 70);
  if (over > 0) for (const [n, [x, y]] of pos) pos.set(n, [x - over, y]);
  return pos;
}

function renderMap() {
  const map = $("map");
  map.replaceChildren();
  const proj = projection();
  const cellAt = new Map();
  for (const c of state.topology?.cells ?? []) cellAt.set(c.name, proj.at(c.latitude, c.longitude));
  const hostAt = hostPositions(proj, cellAt);
  const serving = new Set(state.ues.map((u) => u.cell));

  const layers = ["coverage", "links", "cells", "hosts", "ues"].map((n) => map.appendChild(svg("g", { class: `layer-${n}` })));
  const [gCov, gLinks, gCells, gHosts, gUes] = layers;

  for (const c of state.topology?.cells ?? []) {
    const [x, y] = cellAt.get(c.name);
    gCov.appendChild(svg("circle", {
      class: `coverage${serving.has(c.name) ? " serving" : ""}`, cx: x, cy: y, r: Math.max(proj.metres(c.radiusM), 6),
    }));
    const g = gCells.appendChild(svg("g", { "data-cell": c.name }));
    g.appendChild(svg("circle", { class: "cell-dot", cx: x, cy: y, r: 4 }));
    g.appendChild(svg("text", { class: "label small", x: x + 7, y: y + 14 }, `${c.name} · ${Math.round(c.radiusM)} m`));
  }

  const appsOn = (host) => [...state.instances.values()].filter((i) => i.host === host && i.state === "INSTANTIATED");
  // Below a host's box and its apps: where its links to cells start.
  const hostFoot = (name) => HOST_Y + 22 + appsOn(name).length * APP_H;
  const nodeAt = (n) => hostAt.get(n) ?? cellAt.get(n);
  for (const l of state.topology?.links ?? []) {
    const a = nodeAt(l.a), b = nodeAt(l.b);
    if (!a || !b) continue;
    const parts = [];
    if (l.rateMbit) parts.push(l.rateMbit >= 1000 ? `${l.rateMbit / 1000} Gbit/s` : `${l.rateMbit} Mbit/s`);
    if (l.delayMs != null) parts.push(`${l.delayMs} ms`);
    const label = parts.join(" · ");
    if (hostAt.has(l.a) && hostAt.has(l.b)) {
      // Host to host: an arc over the row, higher the farther apart, labelled at its top.
      const [ax, bx] = [a[0], b[0]], top = HOST_Y - 22;
      const lift = Math.max(24, Math.abs(bx - ax) * 0.3);
      gLinks.appendChild(svg("path", {
        class: "link", d: `M${ax},${top} Q${(ax + bx) / 2},${top - 2 * lift} ${bx},${top}`, fill: "none",
        "data-link": `${l.a}-${l.b}`,
      }));
      if (label) gLinks.appendChild(svg("text", {
        class: "label small", x: (ax + bx) / 2, y: top - lift - 4, "text-anchor": "middle",
      }, label));
      continue;
    }
    // A cell's access link: from its host's foot down to the cell.
    const [ax, ay] = hostAt.has(l.a) ? [a[0], hostFoot(l.a)] : a;
    const [bx, by] = hostAt.has(l.b) ? [b[0], hostFoot(l.b)] : b;
    gLinks.appendChild(svg("line", {
      class: "link access", x1: ax, y1: ay, x2: bx, y2: by, "data-link": `${l.a}-${l.b}`,
    }));
    if (label) gLinks.appendChild(svg("text", {
      class: "label small", x: (ax + bx) / 2 + 6, y: (ay + by) / 2, "text-anchor": "start",
    }, label));
  }

  for (const [name, [x, y]] of hostAt) {
    const g = gHosts.appendChild(svg("g", { class: "host", "data-host": name }));
    g.appendChild(svg("rect", { x: x - 62, y: y - 22, width: 124, height: 44, rx: 6 }));
    g.appendChild(svg("text", { x, y: y + 5, "text-anchor": "middle" }, name));
    appsOn(name).forEach((i, k) => {
      const moving = [...state.relocations.values()].some((r) => r.appInstanceId === i.id && !FINAL.has(r.phase) && r.phase !== "NEEDS_OPERATOR");
      const a = g.appendChild(svg("g", {
        class: `app${moving ? " moving" : ""}`, "data-instance": i.id, "data-on-host": name,
      }));
      const label = `${i.name || i.appDId}${i.address ? " · " + i.address : ""}`;
      const w = Math.max(90, label.length * 6.4 + 14);
      a.appendChild(svg("rect", { x: x - w / 2, y: y + 24 + k * APP_H, width: w, height: 20, rx: 10 }));
      a.appendChild(svg("text", { x, y: y + 38 + k * APP_H, "text-anchor": "middle" }, label));
    });
  }

  for (const u of state.ues) {
    let at = u.latitude != null && proj ? proj.at(u.latitude, u.longitude) : cellAt.get(u.cell);
    if (!at) continue;
    const g = gUes.appendChild(svg("g", { class: "ue", "data-ue": u.address, "data-cell": u.cell }));
    const host = hostAt.get(u.host);
    if (host) g.appendChild(svg("line", { class: "ue-link", x1: at[0], y1: at[1], x2: host[0], y2: hostFoot(u.host) }));
    g.appendChild(svg("circle", { cx: at[0], cy: at[1], r: 8 }));
    g.appendChild(svg("text", { x: at[0] + 11, y: at[1] - 8 }, `UE ${u.address} · ${u.cell}`));
  }
}

// ---- instances ----

function renderInstances() {
  const body = $("instances").tBodies[0];
  body.replaceChildren();
  for (const i of state.instances.values()) {
    const tr = body.appendChild(el("tr", { "data-instance": i.id }));
    tr.appendChild(el("td", { title: i.id }, i.name || shortId(i.id)));
    tr.appendChild(el("td", {}, i.appDId));
    tr.appendChild(el("td", { class: "host" }, i.host ?? "–"));
    tr.appendChild(el("td", {}, i.address ?? "–"));
    tr.appendChild(el("td", {}, i.state));
  }
  if (!state.instances.size) body.appendChild(el("tr")).appendChild(el("td", { colspan: 5, class: "empty" }, "No app instance yet."));
}

// ---- notifications ----

function renderNotifications() {
  const list = $("notifications");
  list.replaceChildren();
  for (const n of [...state.notifications].reverse()) {
    const li = list.appendChild(el("li", { "data-status": n.status }));
    li.appendChild(el("time", {}, fmtTime(n.atMs)));
    li.appendChild(el("span", { class: "status" }, n.status));
    li.appendChild(el("span", {},
      `${instanceName(n.appInstanceId)}${n.ue ? " · UE " + n.ue : ""} · ${n.subscribers} subscriber${n.subscribers === 1 ? "" : "s"}`));
  }
  if (!state.notifications.length) list.appendChild(el("li", { class: "empty" }, "None sent yet."));
}

// ---- relocations ----

// The bar of one relocation: [{name, ms, live}], and where the app was frozen.
function segments(r) {
  const t = r.migrationReport?.timings;
  if (t) {
    const segs = PHASES.filter(([, k]) => t[k] != null).map(([name, k]) => ({ name, ms: t[k] }));
    const before = (t.prepare_ms ?? 0) + (t.pre_copy_ms ?? 0);
    return { segs, frozen: t.frozen_ms != null ? { at: before, ms: t.frozen_ms } : null };
  }
  const seen = state.history.get(r.id);
  if (seen?.length && !FINAL.has(r.phase)) {
    const segs = seen.map((p, i) => ({
      name: p.phase, ms: (seen[i + 1]?.since ?? now()) - p.since, live: i === seen.length - 1,
    }));
    return { segs, frozen: null };
  }
  // The control plane's own phases (an app moving its own context, or a migration that never
  // started): from TRIGGERED to the last phase, or to now while in flight.
  const times = r.phaseTimesMs ?? [];
  const segs = times.slice(0, -1).map(([phase, at], i) => ({ name: phase.toLowerCase(), ms: times[i + 1][1] - at, control: true }));
  if (times.length && !FINAL.has(r.phase)) {
    const [phase, at] = times[times.length - 1];
    segs.push({ name: phase.toLowerCase(), ms: now() - at, control: true, live: true });
  }
  return { segs, frozen: null };
}

function reportFacts(r) {
  const facts = [];
  const m = r.migrationReport;
  if (r.clientDowntimeMs != null) facts.push(["downtime (client)", fmtMs(r.clientDowntimeMs)]);
  if (r.platformDowntimeMs != null) facts.push([r.clientDowntimeMs != null ? "platform" : "downtime (platform)", fmtMs(r.platformDowntimeMs)]);
  if (m?.timings?.frozen_ms != null) facts.push(["frozen", fmtMs(m.timings.frozen_ms)]);
  if (m) facts.push(["moved", fmtMiB(m.bytes_on_wire)]);
  if (m?.timings?.total_ms != null) facts.push(["total", fmtMs(m.timings.total_ms)]);
  if (m?.remote_page_faults != null) facts.push(["remote faults", String(m.remote_page_faults)]);
  if (r.live) facts.push(["now", PHASE_LABEL[r.live.phase] ?? r.live.phase]);
  return facts;
}

function renderTimeline() {
  const box = $("timeline");
  const all = [...state.relocations.values()].sort((a, b) => (a.id < b.id ? 1 : -1));
  if (!all.length) return;
  box.replaceChildren();
  const bars = all.map((r) => [r, segments(r)]);
  const scale = Math.max(1000, ...bars.map(([, s]) => s.segs.reduce((a, x) => a + Math.max(x.ms, 0), 0)));
  for (const [r, { segs, frozen }] of bars) {
    const cls = r.phase === "NEEDS_OPERATOR" ? "needs-operator"
      : ["FAILED", "ROLLED_BACK", "LOST"].includes(r.phase) ? "failed"
      : FINAL.has(r.phase) ? "done" : "in-flight";
    const row = box.appendChild(el("div", { class: `reloc ${cls}`, "data-relocation": r.id, "data-phase": r.phase }));
    const head = row.appendChild(el("div", { class: "head" }));
    head.appendChild(el("span", { class: "id" }, shortId(r.id)));
    head.appendChild(el("b", {}, instanceName(r.appInstanceId)));
    head.appendChild(el("span", {}, `${r.sourceHost} → ${r.targetHost}`));
    head.appendChild(el("span", {}, r.technique ?? r.mode.toLowerCase().replace("_", " ")));
    if (r.associateId) head.appendChild(el("span", {}, `UE ${r.associateId}`));
    head.appendChild(el("span", { class: "phase" }, r.phase.replace("_", " ")));

    const bar = row.appendChild(el("div", { class: "bar" }));
    const strip = bar.appendChild(el("div", { class: "segs" }));
    for (const s of segs) {
      const ms = Math.max(s.ms, 0);
      const seg = strip.appendChild(el("div", {
        class: `seg${s.live ? " live" : ""}`, "data-segment": s.name, title: `${PHASE_LABEL[s.name] ?? s.name}: ${fmtMs(ms)}`,
      }, ms / scale > 0.06 ? (PHASE_LABEL[s.name] ?? s.name) : ""));
      seg.style.width = `${(ms / scale) * 100}%`;
      seg.style.setProperty("--c", s.control ? "var(--control)" : `var(--${s.name}, var(--control))`);
    }
    if (frozen) {
      const f = bar.appendChild(el("div", { class: "frozen", title: `frozen ${fmtMs(frozen.ms)}` }));
      f.style.left = `${(frozen.at / scale) * 100}%`;
      f.style.width = `${(frozen.ms / scale) * 100}%`;
      f.appendChild(el("span", {}, `frozen ${fmtMs(frozen.ms)}`));
    }
    const facts = row.appendChild(el("div", { class: "facts" }));
    for (const [k, v] of reportFacts(r)) {
      const f = facts.appendChild(el("span", {}, `${k} `));
      f.appendChild(el("b", {}, v));
    }
    if (r.phase === "NEEDS_OPERATOR") {
      const p = row.appendChild(el("div", { class: "problem" }, `${r.advice ?? "needs an operator"} — settle it: `));
      p.appendChild(el("code", {}, `ferry control settle ${r.id} --to source|target`));
    } else if (r.error || r.advice) {
      row.appendChild(el("div", { class: "problem" }, r.error ?? r.advice));
    }
  }
}

function renderLegend() {
  const box = $("phase-legend");
  for (const [name] of PHASES) {
    const s = box.appendChild(el("span", {}, PHASE_LABEL[name]));
    s.style.setProperty("--c", `var(--${name})`);
  }
  const c = box.appendChild(el("span", {}, "control plane phases"));
  c.style.setProperty("--c", "var(--control)");
}

// ---- benchmark results ----

function renderBench() {
  const files = state.bench ?? [];
  $("bench-panel").hidden = $("bench-link").hidden = !files.length;
  if (!files.length) return;
  const plot = files.find((f) => f.name === "migrate.svg") ?? files.find((f) => f.name.endsWith(".svg"));
  if (plot) {
    $("bench-plot").src = plot.href;
    $("bench-plot-link").href = plot.href;
  }
  $("bench-plot").hidden = !plot;
  const list = $("bench-files");
  list.replaceChildren();
  for (const f of files) {
    const li = list.appendChild(el("li"));
    li.appendChild(el("a", { href: f.href }, f.name));
    li.appendChild(document.createTextNode(` · ${new Date(f.modifiedMs).toLocaleString()} · ${(f.bytes / 1024).toFixed(1)} KiB`));
  }
}

// ---- the stream ----

function renderAll() {
  renderMap();
  renderInstances();
  renderTimeline();
  renderNotifications();
  renderBench();
}

function upsertRelocation(r) {
  state.relocations.set(r.id, r);
  if (r.live) {
    const h = state.history.get(r.id) ?? [];
    if (h[h.length - 1]?.phase !== r.live.phase) h.push({ phase: r.live.phase, since: r.live.sinceMs });
    state.history.set(r.id, h);
  }
  if (FINAL.has(r.phase)) state.history.delete(r.id);
}

function connect() {
  const es = new EventSource("events");
  const status = $("status");
  es.onopen = () => { status.dataset.state = "live"; status.textContent = "live"; };
  es.onerror = () => { status.dataset.state = "reconnecting"; status.textContent = "reconnecting…"; };
  es.addEventListener("snapshot", (e) => {
    const s = JSON.parse(e.data);
    state.offset = s.nowMs - Date.now();
    state.topology = s.topology;
    state.hosts = s.hosts ?? {};
    state.instances = new Map(s.instances.map((i) => [i.id, i]));
    state.relocations = new Map();
    for (const r of s.relocations) upsertRelocation(r);
    state.notifications = s.notifications;
    state.ues = s.ues;
    state.bench = s.bench;
    renderAll();
  });
  es.addEventListener("relocation", (e) => {
    const m = JSON.parse(e.data);
    state.offset = m.nowMs - Date.now();
    upsertRelocation(m.relocation);
    renderTimeline();
    renderMap();
  });
  es.addEventListener("instance", (e) => {
    const i = JSON.parse(e.data);
    state.instances.set(i.id, i);
    renderInstances();
    renderMap();
  });
  es.addEventListener("instance_removed", (e) => {
    state.instances.delete(JSON.parse(e.data).id);
    renderInstances();
    renderMap();
  });
  es.addEventListener("notification", (e) => {
    state.notifications.push(JSON.parse(e.data));
    if (state.notifications.length > 100) state.notifications.shift();
    renderNotifications();
  });
  es.addEventListener("ues", (e) => {
    state.ues = JSON.parse(e.data);
    renderMap();
  });
}

renderLegend();
connect();
// Bars of relocations in flight grow with the clock (a redraw, not a request).
setInterval(() => {
  if ([...state.relocations.values()].some((r) => !FINAL.has(r.phase))) renderTimeline();
}, 250);
