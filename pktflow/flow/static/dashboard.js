// pktflow dashboard: draws each numbered snapshot from /events (server-sent events).
// Every counter cell carries data-k="<path>" naming its place in the snapshot JSON, so a
// test (or a curious user) can check the page against /snapshot?seq=N.
"use strict";

const HISTORY = 120; // points per rate chart
const prev = { time: null, nf: null, pktgen: null };
const charts = new Map(); // chart key -> {plot, data}

const fmt = (n) => Math.round(n).toLocaleString("en-US");
function si(n, unit) {
  const steps = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [v, p] of steps) if (Math.abs(n) >= v) return (n / v).toFixed(2) + " " + p + unit;
  return Math.round(n) + " " + unit;
}

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text; // never innerHTML: names come from users
  return e;
}

function cell(row, text, key, cls) {
  const td = el("td", key ? { "data-k": key } : {}, text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function rate(now, before, dt) {
  return before === undefined || dt <= 0 ? 0 : Math.max(0, (now - before) / dt);
}

// ---------------------------------------------------------------- charts
function chart(container, key, title, labels) {
  let c = charts.get(key);
  if (c) return c;
  const box = el("div", { class: "chart", "data-chart": key });
  box.appendChild(el("h3", {}, title));
  container.appendChild(box);
  const data = [[], ...labels.map(() => [])];
  const colors = ["#2b7bb9", "#d9822b", "#3a9c5b", "#b93a5b"];
  const opts = {
    width: 420, height: 160,
    scales: { x: { time: true } },
    series: [{}, ...labels.map((label, i) => ({
      label, stroke: colors[i % colors.length], width: 1.5,
      value: (u, v) => (v == null ? "-" : si(v, "pps")),
    }))],
    axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => si(v, "")) }],
  };
  c = { plot: new uPlot(opts, data, box), data };
  charts.set(key, c);
  return c;
}

function plot(c, t, values) {
  c.data[0].push(t);
  values.forEach((v, i) => c.data[i + 1].push(v));
  if (c.data[0].length > HISTORY) c.data.forEach((s) => s.shift());
  c.plot.setData(c.data);
}

// ---------------------------------------------------------------- flow graph
function depths(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const depth = new Map();
  const visit = (n, seen) => {
    if (depth.has(n.id)) return depth.get(n.id);
    if (seen.has(n.id)) return 0;
    seen.add(n.id);
    let d = 0;
    for (const [src] of n.inputs || []) {
      const s = byId.get(src);
      if (s) d = Math.max(d, visit(s, seen) + 1);
    }
    depth.set(n.id, d);
    return d;
  };
  nodes.forEach((n) => visit(n, new Set()));
  return depth;
}

let graphShape = "";
function drawGraph(nodes, pps) {
  const box = document.getElementById("graph");
  const shape = JSON.stringify(nodes.map((n) => [n.id, n.inputs, n.op, n.name]));
  const W = 190, H = 74, GX = 50, GY = 18;
  if (shape !== graphShape) {
    graphShape = shape;
    const depth = depths(nodes);
    const cols = new Map();
    const pos = new Map();
    for (const n of nodes) {
      const d = depth.get(n.id);
      const row = cols.get(d) || 0;
      cols.set(d, row + 1);
      pos.set(n.id, [10 + d * (W + GX), 10 + row * (H + GY)]);
    }
    const width = 20 + Math.max(...[...cols.keys()].map((d) => (d + 1) * (W + GX)));
    const height = 20 + Math.max(...[...cols.values()]) * (H + GY);
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const defs = document.createElementNS(NS, "defs");
    const marker = document.createElementNS(NS, "marker");
    for (const [k, v] of Object.entries({ id: "arrow", markerWidth: 8, markerHeight: 8,
      refX: 7, refY: 4, orient: "auto" })) marker.setAttribute(k, v);
    const tip = document.createElementNS(NS, "path");
    tip.setAttribute("d", "M0,0 L8,4 L0,8 z");
    marker.appendChild(tip);
    defs.appendChild(marker);
    svg.appendChild(defs);
    for (const n of nodes) {
      for (const [src, slot] of n.inputs || []) {
        const a = pos.get(src), b = pos.get(n.id);
        if (!a || !b) continue;
        const x1 = a[0] + W, y1 = a[1] + H / 2, x2 = b[0] - 2, y2 = b[1] + H / 2;
        const p = document.createElementNS(NS, "path");
        p.setAttribute("d", `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`);
        p.setAttribute("class", "edge");
        p.setAttribute("marker-end", "url(#arrow)");
        const t = document.createElementNS(NS, "title");
        t.textContent = `output ${slot}`;
        p.appendChild(t);
        svg.appendChild(p);
      }
    }
    for (const n of nodes) {
      const [x, y] = pos.get(n.id);
      const g = document.createElementNS(NS, "g");
      g.setAttribute("class", "node " + (n.path || "builtin"));
      g.setAttribute("transform", `translate(${x},${y})`);
      const r = document.createElementNS(NS, "rect");
      r.setAttribute("width", W);
      r.setAttribute("height", H);
      r.setAttribute("rx", 6);
      g.appendChild(r);
      const lines = [[n.name, "name"], [`${n.op} · ${n.path || "built-in"}`, "kind"],
        ["", "clones"], ["", "count"]];
      lines.forEach(([text, cls], i) => {
        const t = document.createElementNS(NS, "text");
        t.setAttribute("x", 8);
        t.setAttribute("y", 17 + i * 16);
        t.setAttribute("class", cls);
        t.setAttribute("data-g", `${n.id}.${cls}`);
        t.textContent = text;
        g.appendChild(t);
      });
      svg.appendChild(g);
    }
    box.replaceChildren(svg);
  }
  for (const n of nodes) {
    const set = (cls, text) => {
      const t = box.querySelector(`[data-g="${n.id}.${cls}"]`);
      if (t) t.textContent = text;
    };
    set("clones", `clones ${n.clones} (peak ${n.peak_clones})`);
    set("count", `in ${fmt(n.in)} · ${si(pps.get(n.id) || 0, "pps")}`);
  }
}

// ---------------------------------------------------------------- the NF
function drawNF(nf, t, dt) {
  const before = prev.nf;
  const old = new Map((before ? before.nodes : []).map((n) => [n.id, n]));
  const pps = new Map();
  const nodeRows = nf.nodes.map((n, i) => {
    const o = old.get(n.id) || {};
    const inPps = rate(n.in, o.in, dt), outPps = rate(n.out, o.out, dt);
    pps.set(n.id, inPps);
    const tr = el("tr");
    const k = `nf.nodes.${i}`;
    cell(tr, n.id, `${k}.id`);
    cell(tr, n.name, `${k}.name`);
    cell(tr, n.op, `${k}.op`);
    cell(tr, n.path || "built-in", null, n.path || "builtin");
    cell(tr, n.clones, `${k}.clones`, "num");
    cell(tr, n.peak_clones, `${k}.peak_clones`, "num");
    cell(tr, fmt(n.in), `${k}.in`, "num");
    cell(tr, fmt(n.out), `${k}.out`, "num");
    cell(tr, fmt(inPps), null, "num");
    cell(tr, fmt(outPps), null, "num");
    const drops = Object.entries(n.dropped).filter(([, v]) => v)
      .map(([r, v]) => `${r} ${fmt(v)}`).join(", ");
    cell(tr, drops || "0", null, "num");
    return tr;
  });
  fill(document.querySelector("#nodes tbody"), nodeRows);
  drawGraph(nf.nodes, pps);

  const oldPorts = before ? before.ports : {};
  const chartBox = document.getElementById("nf-charts");
  const portRows = Object.entries(nf.ports).map(([key, p]) => {
    const o = oldPorts[key] || {};
    const rxPps = rate(p.rx_packets, o.rx_packets, dt);
    const txPps = rate(p.tx_packets, o.tx_packets, dt);
    const rxBps = 8 * rate(p.rx_bytes, o.rx_bytes, dt);
    const txBps = 8 * rate(p.tx_bytes, o.tx_bytes, dt);
    const tr = el("tr");
    const k = `nf.ports.${key}`;
    cell(tr, key);
    cell(tr, p.name, `${k}.name`);
    for (const f of ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"]) {
      cell(tr, fmt(p[f]), `${k}.${f}`, "num");
    }
    cell(tr, fmt(rxPps), null, "num");
    cell(tr, fmt(txPps), null, "num");
    cell(tr, si(rxBps, "bit/s"), null, "num");
    cell(tr, si(txBps, "bit/s"), null, "num");
    cell(tr, `${fmt(p.rx_dropped)} / ${fmt(p.tx_dropped)}`, null, "num");
    cell(tr, `${fmt(p.rx_errors)} / ${fmt(p.tx_errors)}`, null, "num");
    if (before) {
      plot(chart(chartBox, `nf:${key}`, `NF port ${key} (${p.name}) packets/s`,
        ["rx pps", "tx pps"]), t, [rxPps, txPps]);
    }
    return tr;
  });
  fill(document.querySelector("#ports tbody"), portRows);

  const ended = nf.conservation.ended;
  const dropRows = Object.entries(ended).filter(([r]) => r !== "sent").map(([reason, v]) => {
    const tr = el("tr");
    cell(tr, reason);
    cell(tr, fmt(v), `nf.conservation.ended.${reason}`, "num");
    cell(tr, nf.nodes.filter((n) => n.dropped[reason]).map((n) => n.name).join(", "));
    if (v) tr.className = "hot";
    return tr;
  });
  if (!dropRows.length) {
    const tr = el("tr");
    cell(tr, "none");
    cell(tr, "0", null, "num");
    cell(tr, "");
    dropRows.push(tr);
  }
  fill(document.querySelector("#drops tbody"), dropRows);

  const tableRows = (nf.tables || []).map((tb, i) => {
    const tr = el("tr");
    const k = `nf.tables.${i}`;
    cell(tr, tb.file, `${k}.file`);
    cell(tr, tb.version, `${k}.version`, "num");
    cell(tr, tb.rules, `${k}.rules`, "num");
    cell(tr, tb.loaded_at ? new Date(tb.loaded_at * 1000).toLocaleTimeString() : "-");
    cell(tr, tb.reloads, `${k}.reloads`, "num");
    cell(tr, tb.failed_reloads, `${k}.failed_reloads`, "num");
    cell(tr, tb.last_error || "none", `${k}.last_error`, tb.last_error ? "error" : "");
    cell(tr, (tb.nodes || []).join(", "));
    return tr;
  });
  if (!tableRows.length) {
    const tr = el("tr");
    const td = cell(tr, "no rule tables in this graph");
    td.colSpan = 8;
    tableRows.push(tr);
  }
  fill(document.querySelector("#tables tbody"), tableRows);

  const c = nf.conservation;
  document.getElementById("balance").textContent =
    `entered ${fmt(c.total_entered)} · ended ${fmt(c.total_ended)} · in flight ` +
    `${fmt(c.in_flight)} · ${c.balanced ? "balanced" : "NOT balanced"}`;
  document.getElementById("uptime").textContent = `${nf.uptime.toFixed(1)} s` +
    (nf.running ? "" : " (stopped)");
}

// ---------------------------------------------------------------- the generator
function drawPktgen(gen, t) {
  const ids = Object.keys(gen.ports);
  const head = el("tr");
  head.appendChild(el("th", {}, "Port"));
  ids.forEach((id) => head.appendChild(el("th", {}, `${id} ${gen.ports[id].name}`)));
  document.querySelector("#gen-page thead").replaceChildren(head);
  const rows = gen.page.map(([label, cells], r) => {
    const tr = el("tr");
    tr.appendChild(el("th", {}, label));
    cells.forEach((text, i) => cell(tr, text, `pktgen.page.${r}.1.${i}`, "num"));
    return tr;
  });
  fill(document.querySelector("#gen-page tbody"), rows);
  const notes = (gen.notes || []).map((n) => el("li", {}, n));
  document.getElementById("gen-notes").replaceChildren(...notes);
  const box = document.getElementById("gen-charts");
  for (const id of ids) {
    const p = gen.ports[id];
    plot(chart(box, `gen:${id}`, `Generator port ${id} (${p.name}) packets/s`,
      ["tx pps", "rx pps"]), t, [p.tx_pps, p.rx_pps]);
  }
}

// ---------------------------------------------------------------- the stream
function draw(snap) {
  const dt = prev.time === null ? 0 : snap.time - prev.time;
  const nfSection = document.getElementById("nf");
  const genSection = document.getElementById("pktgen");
  const nfOk = snap.nf && !snap.nf.error;
  const genOk = snap.pktgen && !snap.pktgen.error;
  nfSection.hidden = !nfOk;
  genSection.hidden = !genOk;
  document.getElementById("empty").hidden = nfOk || genOk;
  if (nfOk) drawNF(snap.nf, snap.time, dt);
  if (genOk) drawPktgen(snap.pktgen, snap.time);
  document.getElementById("step").textContent = snap.step
    ? `${snap.step.name}: ${snap.step.graph}` : "";
  document.getElementById("seq").textContent = snap.seq;
  prev.time = snap.time;
  prev.nf = nfOk ? snap.nf : null;
  prev.pktgen = genOk ? snap.pktgen : null;
}

function connect() {
  const state = document.getElementById("state");
  const source = new EventSource("/events");
  source.onopen = () => { state.textContent = "live"; state.className = "state live"; };
  source.onerror = () => { state.textContent = "reconnecting"; state.className = "state down"; };
  source.onmessage = (event) => draw(JSON.parse(event.data));
}

connect();
