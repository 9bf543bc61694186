// dvcpulse live scoreboard: the plan's appendix table, refreshed when scoring counts new events.
// Plain JS, no libraries, no CDN: this file is served by the scoring service itself.
"use strict";

const METRICS = [
  { key: "online", num: "online", den: "received", label: "trực tuyến" },
  { key: "digitization", num: "digitized", den: "received", label: "số hóa" },
  { key: "online_payment", num: "paid_online", den: "fee_required", label: "thanh toán trực tuyến" },
];
const ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"];
const POLL_MS = 60000; // safety net if the event stream is blocked by a proxy

const state = {
  config: null,
  window: null,
  level: "all",
  scores: null,
  levels: null,
  previous: new Map(), // cell key -> text, to flash the cells that changed
  live: { boot: null, version: null },
  inFlight: null,
  again: false,
  renders: 0,
};

// ---- Vietnamese number format -------------------------------------------------------------
// Rates are computed here from the counts, in integers, and cut (not rounded) to two decimals as
// the plan's appendix prints them: 24.965/39.219 -> 63,65%. Same rule as dvcpulse_common.formatting.
function rateHundredths(num, den) {
  if (!den) return null;
  return Math.floor((num * 10000) / den);
}
function fmtRate(num, den) {
  const h = rateHundredths(num, den);
  if (h === null) return null;
  return `${Math.floor(h / 100)},${String(h % 100).padStart(2, "0")}%`;
}
function fmtCount(n) {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ".");
}
function fmtTarget(value) {
  if (value === null || value === undefined) return null;
  return `${String(value).replace(".", ",")}%`;
}
function fmtDate(iso) {
  const [y, m, d] = iso.slice(0, 10).split("-");
  return `${d}/${m}/${y}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// ---- data ----------------------------------------------------------------------------------
async function getJSON(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!resp.ok) {
    let detail = resp.statusText;
    try { detail = (await resp.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${resp.status} ${detail}`);
  }
  return resp.json();
}

function windowParam() {
  return state.window && state.window !== "all" ? `window=${encodeURIComponent(state.window)}` : "";
}

// One refresh at a time; a change signalled meanwhile triggers exactly one more.
function refresh() {
  if (state.inFlight) {
    state.again = true;
    return state.inFlight;
  }
  state.inFlight = (async () => {
    try {
      const q = windowParam();
      const [scores, levels] = await Promise.all([
        getJSON(`/api/v1/scores?${q}`),
        getJSON(`/api/v1/scores/levels?${q}`),
      ]);
      state.scores = scores;
      state.levels = levels;
      render();
      showError(null);
    } catch (err) {
      showError(`Không tải được số liệu (${err.message}). Đang thử lại…`);
    } finally {
      state.inFlight = null;
      if (state.again) {
        state.again = false;
        refresh();
      }
    }
  })();
  return state.inFlight;
}

function showError(text) {
  const box = document.getElementById("error");
  box.hidden = !text;
  box.textContent = text || "";
}

// ---- table ---------------------------------------------------------------------------------
function rateCell(row, metric, keyPrefix) {
  const status = row.status[metric.key];
  let text;
  if (status === "not_applicable") text = "N/A";
  else if (status === "no_data") text = "—";
  else text = fmtRate(row[metric.num], row[metric.den]);
  const target = fmtTarget(row.targets[metric.key]);
  const title = status === "not_applicable"
    ? state.config.no_fee_note
    : `${fmtCount(row[metric.num])}/${fmtCount(row[metric.den])} hồ sơ` +
      (target ? ` · chỉ tiêu ${target}` : "");
  // "met" without a target (the province-wide row, or the all-time window) is not an
  // achievement: shown in neutral colours.
  const shade = status === "met" && !target ? "none" : status;
  const key = `${keyPrefix}|${metric.key}`;
  const before = state.previous.get(key);
  state.previous.set(key, text);
  const changed = before !== undefined && before !== text;
  return el("td", {
    class: `rate st-${shade}${changed ? " flash" : ""}`,
    title,
    "data-metric": metric.key,
    "data-status": status,
  }, text);
}

function note(row) {
  if (row.status.online_payment === "not_applicable") return state.config.no_fee_note;
  if (row.received === 0) return "Chưa phát sinh hồ sơ trong kỳ";
  return "";
}

function render() {
  const body = document.getElementById("rows");
  const rows = [];
  const byLevel = new Map(state.levels.rows.map((r) => [r.level, r]));
  const shown = state.config.levels.filter((lv) => state.level === "all" || lv.code === state.level);
  shown.forEach((lv, i) => {
    const levelRow = byLevel.get(lv.code);
    const targets = levelRow ? levelRow.targets : lv.targets;
    const heading = el("tr", { class: "group", "data-level": lv.code },
      el("td", { colSpan: 2 }, `${ROMAN[state.config.levels.indexOf(lv)] || i + 1}. ${lv.label.toLocaleUpperCase("vi")}`));
    for (const m of METRICS) {
      const t = fmtTarget(targets[m.key]);
      heading.append(el("td", { class: "target" }, t ? `Chỉ tiêu ${t}` : ""));
    }
    heading.append(el("td"));
    rows.push(heading);
    let stt = 0;
    for (const r of state.scores.rows) {
      if (r.level !== lv.code) continue;
      stt += 1;
      const tr = el("tr", { class: "unit-row", "data-unit": r.unit_code, tabIndex: 0 },
        el("td", { class: "stt" }, String(stt)),
        el("td", { class: "unit" }, r.unit_name));
      for (const m of METRICS) tr.append(rateCell(r, m, r.unit_code));
      tr.append(el("td", { class: "note" }, note(r)));
      tr.addEventListener("click", () => openTrend(r));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") openTrend(r); });
      rows.push(tr);
    }
    if (levelRow) rows.push(totalRow(levelRow, "Tổng", lv.code));
  });
  const grand = byLevel.get("total");
  if (state.level === "all" && grand) rows.push(totalRow(grand, "Toàn tỉnh", "total"));
  body.replaceChildren(...rows);

  const win = state.scores.window;
  const dates = win.date_from ? ` (${fmtDate(win.date_from)} – ${fmtDate(win.date_to)})` : "";
  document.getElementById("window-name").textContent = `${win.name}${dates}`;
  const now = new Date();
  document.getElementById("updated").textContent =
    `Cập nhật lúc ${now.toLocaleTimeString("vi-VN", { hour12: false })}`;
  state.renders += 1;
  document.body.dataset.renders = String(state.renders);
  document.body.dataset.state = "ready";
}

function totalRow(row, label, level) {
  const tr = el("tr", { class: "total", "data-total": level },
    el("td"), el("td", { class: "unit" }, `${label} (${fmtCount(row.received)} hồ sơ)`));
  for (const m of METRICS) tr.append(rateCell(row, m, `total:${level}`));
  tr.append(el("td", { class: "note" }, row.status.online_payment === "not_applicable" ? state.config.no_fee_note : ""));
  return tr;
}

function renderTabs() {
  const nav = document.getElementById("tabs");
  const tabs = [{ code: "all", label: "Tất cả các cấp" }, ...state.config.levels];
  nav.replaceChildren(...tabs.map((t) => {
    const b = el("button", {
      type: "button",
      class: t.code === state.level ? "tab active" : "tab",
      "data-level": t.code,
      role: "tab",
    }, t.label);
    b.setAttribute("aria-selected", String(t.code === state.level));
    b.addEventListener("click", () => {
      state.level = t.code;
      history.replaceState(null, "", `${location.pathname}${location.search}#level=${t.code}`);
      renderTabs();
      if (state.scores) render();
    });
    return b;
  }));
}

function renderWindows() {
  const select = document.getElementById("window");
  select.replaceChildren(...state.config.windows.map((w) =>
    el("option", { value: w.id, selected: w.id === state.window }, w.name)));
  select.addEventListener("change", () => {
    state.window = select.value;
    const params = new URLSearchParams(location.search);
    params.set("window", state.window);
    history.replaceState(null, "", `${location.pathname}?${params}${location.hash}`);
    state.previous.clear();
    refresh();
  });
}

// ---- live updates --------------------------------------------------------------------------
function connectLive() {
  const badge = document.getElementById("live");
  const source = new EventSource("/api/v1/live");
  const onChange = (event) => {
    const data = JSON.parse(event.data);
    const stale = data.boot !== state.live.boot || data.version !== state.live.version;
    state.live = data;
    if (stale && event.type === "scores") refresh();
    // A reconnect after missed changes (or to a restarted service) refetches too.
    if (stale && event.type === "hello" && state.scores) refresh();
  };
  source.addEventListener("hello", onChange);
  source.addEventListener("scores", onChange);
  source.onopen = () => {
    badge.className = "live on";
    badge.textContent = "● Trực tiếp";
  };
  source.onerror = () => {
    badge.className = "live off";
    badge.textContent = "○ Mất kết nối, đang thử lại…";
  };
}

// ---- a unit's trend ------------------------------------------------------------------------
async function openTrend(row) {
  const panel = document.getElementById("trend");
  document.getElementById("trend-title").textContent = row.unit_name;
  document.getElementById("trend-sub").textContent = "Đang tải…";
  const chart = document.getElementById("trend-chart");
  chart.replaceChildren();
  panel.hidden = false;
  panel.dataset.unit = row.unit_code;
  try {
    const q = windowParam();
    const series = await getJSON(
      `/api/v1/timeseries?unit=${encodeURIComponent(row.unit_code)}&interval=day${q ? `&${q}` : ""}`);
    if (panel.dataset.unit !== row.unit_code) return; // another unit was clicked meanwhile
    const last = series.rows[series.rows.length - 1];
    document.getElementById("trend-sub").textContent = last
      ? `Lũy kế đến ${fmtDate(last.time)}: ` + METRICS.map((m) => {
        const v = fmtRate(last[`cum_${m.num}`], last[`cum_${m.den}`]);
        return `${m.label} ${v === null ? "N/A" : v}`;
      }).join(" · ")
      : "Chưa có hồ sơ trong kỳ.";
    chart.replaceChildren(drawChart(series.rows));
    panel.dataset.state = "ready";
  } catch (err) {
    document.getElementById("trend-sub").textContent = `Không tải được diễn biến (${err.message}).`;
  }
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// Cumulative rates per day (the number the table showed at the end of each day) and targets.
function drawChart(rows) {
  const W = 720, H = 300, L = 44, R = 12, T = 12, B = 30;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const x = (i) => L + (rows.length <= 1 ? 0 : (i * (W - L - R)) / (rows.length - 1));
  const y = (v) => T + ((100 - v) * (H - T - B)) / 100;
  for (const v of [0, 25, 50, 75, 100]) {
    root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    const label = svg("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" });
    label.textContent = `${v}%`;
    root.append(label);
  }
  const ticks = rows.length ? [...new Set([0, Math.floor((rows.length - 1) / 2), rows.length - 1])] : [];
  for (const i of ticks) {
    const anchor = i === 0 ? "start" : i === rows.length - 1 ? "end" : "middle";
    const label = svg("text", { x: x(i), y: H - 8, class: "axis", "text-anchor": anchor });
    label.textContent = fmtDate(rows[i].time).slice(0, 5);
    root.append(label);
  }
  for (const m of METRICS) {
    const target = rows.length ? rows[rows.length - 1][`target_${m.key}`] : null;
    if (target !== null && target !== undefined) {
      root.append(svg("line", { x1: L, x2: W - R, y1: y(target), y2: y(target), class: `target m-${m.key}` }));
    }
    // Break the line where the rate is undefined (no dossiers yet, or payment not applicable).
    let d = "";
    let pen = "M";
    rows.forEach((r, i) => {
      const v = r[`cum_${m.key}_rate`];
      if (v === null || v === undefined) { pen = "M"; return; }
      d += `${pen}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
    });
    if (d) root.append(svg("path", { d, class: `series m-${m.key}`, "data-metric": m.key }));
  }
  return root;
}

function closeTrend() {
  const panel = document.getElementById("trend");
  panel.hidden = true;
  delete panel.dataset.unit;
  delete panel.dataset.state;
}

// ---- start ---------------------------------------------------------------------------------
async function main() {
  try {
    state.config = await getJSON("/api/v1/scoreboard/config");
  } catch (err) {
    showError(`Không tải được cấu hình (${err.message}).`);
    document.body.dataset.state = "error";
    return;
  }
  document.getElementById("title").textContent = state.config.title;
  const params = new URLSearchParams(location.search);
  const ids = state.config.windows.map((w) => w.id);
  state.window = ids.includes(params.get("window")) ? params.get("window") : state.config.default_window;
  const hashLevel = new URLSearchParams(location.hash.slice(1)).get("level");
  if (hashLevel && state.config.levels.some((lv) => lv.code === hashLevel)) state.level = hashLevel;
  renderTabs();
  renderWindows();
  document.getElementById("trend-close").addEventListener("click", closeTrend);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeTrend(); });
  await refresh();
  connectLive();
  setInterval(refresh, POLL_MS);
}

main();
