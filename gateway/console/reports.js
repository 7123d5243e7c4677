/*
 * Switchboard reports page: one page, no framework, no build step, charts drawn as SVG by
 * this file. It reads only GET /v1/stats (admin or supervisor token), in the browser's time
 * zone, and speaks English or German (the browser's language, switchable). Text goes into
 * the page with textContent; SVG gets attributes only (the page's CSP forbids inline style).
 */
"use strict";

(function () {
  const TOKEN_KEY = "switchboard-reports-token";
  const LANG_KEY = "switchboard-reports-lang";
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#2447d5", "#1f9d6b", "#e08a00", "#c2367a", "#6b4fd8", "#2f8fb8", "#8a8f3d", "#a0522d"];
  const $ = (id) => document.getElementById(id);

  const TEXT = {
    en: {
      title: "reports", language: "Language", signout: "Sign out", signin: "Sign in",
      signin_hint: "Use an admin or supervisor token.", token: "Token",
      bad_token: "That token is not valid.", not_allowed: "This page is for admin and supervisor tokens.",
      from: "From", to: "To", trend_by: "Trend by", table_by: "Table by", day: "Day", hour: "Hour",
      agent: "Agent", queue: "Queue", channel: "Channel", show: "Show", csv: "Download CSV",
      volume_title: "Incoming messages per channel", frt_title: "First response time",
      sla_title: "SLA attainment", survey_title: "CSAT and NPS",
      table_title_agent: "Per agent", table_title_queue: "Per queue", table_title_channel: "Per channel",
      no_sla: "No SLAs configured yet.", no_data: "No data in this period.",
      median: "Median", p90: "90th percentile", csat: "CSAT %", nps: "NPS",
      tz: "Time zone: {tz}", unassigned: "(unassigned)", loading: "Loading…", bad_range: "The start must be before the end.",
      t_conversations: "Conversations", t_in: "Messages in", t_out: "Replies", t_frt: "First response (median)",
      t_resolution: "Resolution (median)", t_fcr: "First-contact resolution", t_backlog: "Backlog",
      t_waiting: "Oldest waiting", t_csat: "CSAT", t_nps: "NPS", t_abandoned: "Abandoned",
      c_conversations: "Conversations", c_out: "Replies", c_frt: "First response", c_next: "Next response",
      c_resolution: "Resolution", c_fcr: "FCR", c_handling: "Handling", c_csat: "CSAT", c_nps: "NPS",
      c_backlog: "Backlog", c_resolved: "Resolved",
      t_sla: "SLA attainment", t_breaches: "SLA breaches", t_frt_business: "First response (business hours)",
      c_sla: "SLA", sla_all: "All targets", sla_first_response: "First response",
      sla_next_response: "Next response", sla_resolution: "Resolution",
    },
    de: {
      title: "Berichte", language: "Sprache", signout: "Abmelden", signin: "Anmelden",
      signin_hint: "Mit einem Admin- oder Supervisor-Token.", token: "Token",
      bad_token: "Dieses Token ist ungültig.", not_allowed: "Diese Seite ist für Admin- und Supervisor-Tokens.",
      from: "Von", to: "Bis", trend_by: "Verlauf nach", table_by: "Tabelle nach", day: "Tag", hour: "Stunde",
      agent: "Agent", queue: "Warteschlange", channel: "Kanal", show: "Anzeigen", csv: "CSV herunterladen",
      volume_title: "Eingehende Nachrichten pro Kanal", frt_title: "Erste Antwortzeit",
      sla_title: "SLA-Erfüllung", survey_title: "CSAT und NPS",
      table_title_agent: "Pro Agent", table_title_queue: "Pro Warteschlange", table_title_channel: "Pro Kanal",
      no_sla: "Noch keine SLAs eingerichtet.", no_data: "Keine Daten in diesem Zeitraum.",
      median: "Median", p90: "90. Perzentil", csat: "CSAT %", nps: "NPS",
      tz: "Zeitzone: {tz}", unassigned: "(nicht zugewiesen)", loading: "Wird geladen …", bad_range: "Der Beginn muss vor dem Ende liegen.",
      t_conversations: "Gespräche", t_in: "Nachrichten ein", t_out: "Antworten", t_frt: "Erste Antwort (Median)",
      t_resolution: "Lösung (Median)", t_fcr: "Lösung beim Erstkontakt", t_backlog: "Offen",
      t_waiting: "Längste Wartezeit", t_csat: "CSAT", t_nps: "NPS", t_abandoned: "Abgebrochen",
      c_conversations: "Gespräche", c_out: "Antworten", c_frt: "Erste Antwort", c_next: "Folgeantwort",
      c_resolution: "Lösung", c_fcr: "Erstkontakt", c_handling: "Bearbeitung", c_csat: "CSAT", c_nps: "NPS",
      c_backlog: "Offen", c_resolved: "Gelöst",
      t_sla: "SLA-Erfüllung", t_breaches: "SLA-Verletzungen", t_frt_business: "Erste Antwort (Geschäftszeit)",
      c_sla: "SLA", sla_all: "Alle Ziele", sla_first_response: "Erste Antwort",
      sla_next_response: "Folgeantwort", sla_resolution: "Lösung",
    },
  };

  const S = { token: null, lang: "en", data: null };
  const t = (key) => (TEXT[S.lang] && TEXT[S.lang][key]) || TEXT.en[key] || key;
  const zone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

  // --- formatting (Intl, in the page's language) ------------------------------------------
  function num(x, digits) {
    if (x == null) return "–";
    return new Intl.NumberFormat(S.lang, { maximumFractionDigits: digits == null ? 0 : digits }).format(x);
  }
  function pct(rate) { return rate == null ? "–" : num(rate * 100, 1) + " %"; }
  function duration(seconds) {
    if (seconds == null) return "–";
    if (seconds < 60) return num(seconds, 0) + " s";
    if (seconds < 3600) return num(seconds / 60, 1) + " min";
    if (seconds < 172800) return num(seconds / 3600, 1) + " h";
    return num(seconds / 86400, 1) + (S.lang === "de" ? " Tg." : " d");
  }
  function bucketLabel(key, by) {
    if (by === "hour") return key.slice(11, 16);
    const d = new Date(key + "T12:00:00Z");
    return new Intl.DateTimeFormat(S.lang, { day: "2-digit", month: "2-digit", timeZone: "UTC" }).format(d);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "className") node.className = v; else node.setAttribute(k, String(v));
    }
    if (text != null) node.textContent = String(text);
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) node.setAttribute(k, String(v));
    if (text != null) node.textContent = String(text);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function status(text, isError) {
    const box = $("status");
    box.textContent = text || "";
    box.classList.toggle("error", !!isError);
  }

  // --- language ----------------------------------------------------------------------------
  function applyLanguage() {
    document.documentElement.lang = S.lang;
    $("lang").value = S.lang;
    for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.getAttribute("data-t"));
    $("tz").textContent = t("tz").replace("{tz}", zone());
    document.title = "Switchboard – " + t("title");
    if (S.data) render();
  }

  // --- API ---------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(path, token) {
    let resp;
    try { resp = await fetch(path, { headers: { Authorization: "Bearer " + (token || S.token) } }); }
    catch (e) { throw new ApiError(0, "The gateway cannot be reached."); }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) throw new ApiError(resp.status, (data && data.error && data.error.message) || "HTTP " + resp.status);
    return data;
  }
  function query(params) {
    const q = new URLSearchParams({ from: $("from").value, to: $("to").value, tz: zone(), ...params });
    return "/v1/stats?" + q.toString();
  }

  // --- sign in -----------------------------------------------------------------------------
  async function signIn(token) {
    const err = $("signin-error");
    err.hidden = true;
    let me;
    try { me = await api("/v1/me", token); }
    catch (e) { err.textContent = e.status === 401 ? t("bad_token") : e.message; err.hidden = false; return false; }
    if (me.role !== "admin" && me.role !== "supervisor") {
      err.textContent = t("not_allowed");
      err.hidden = false;
      return false;
    }
    S.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("me").textContent = me.name;
    $("me").hidden = false;
    $("signout").hidden = false;
    $("signin-view").hidden = true;
    $("app").hidden = false;
    await load();
    return true;
  }
  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    S.token = null;
    S.data = null;
    $("app").hidden = true;
    $("signin-view").hidden = false;
    $("me").hidden = true;
    $("signout").hidden = true;
  }

  // --- loading -----------------------------------------------------------------------------
  async function load() {
    if ($("from").value > $("to").value) { status(t("bad_range"), true); return; }
    status(t("loading"));
    const trend = $("trend").value;
    const tableBy = $("table-by").value;
    try {
      const [byTime, byChannel, table] = await Promise.all([
        api(query({ group_by: trend })),
        api(query({ group_by: "channel" })),
        api(query({ group_by: tableBy })),
      ]);
      const channels = byChannel.groups.map((g) => g.key).filter((k) => k != null);
      const perChannel = await Promise.all(
        channels.map((c) => api(query({ group_by: trend, channel: c })))
      );
      S.data = { trend, tableBy, byTime, channels, perChannel, table };
      status("");
      render();
    } catch (e) {
      if (e.status === 401) signOut();
      status(e.message, true);
    }
  }

  // --- charts ------------------------------------------------------------------------------
  const W = 640, H = 260, PAD = { l: 56, r: 12, t: 12, b: 34 };

  function frame(labels, lo, hi, fmt) {
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
    const plotW = W - PAD.l - PAD.r, plotH = H - PAD.t - PAD.b;
    const y = (v) => PAD.t + plotH - ((v - lo) / (hi - lo || 1)) * plotH;
    const step = plotW / Math.max(labels.length, 1);
    const x = (i) => PAD.l + step * i + step / 2;
    for (let k = 0; k <= 4; k++) {
      const v = lo + ((hi - lo) * k) / 4;
      root.appendChild(svg("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: "grid" }));
      root.appendChild(svg("text", { x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, fmt(v)));
    }
    root.appendChild(svg("line", { x1: PAD.l, x2: W - PAD.r, y1: y(lo), y2: y(lo), class: "axis" }));
    const every = Math.max(1, Math.ceil(labels.length / 12));
    labels.forEach((label, i) => {
      if (i % every) return;
      root.appendChild(svg("text", { x: x(i), y: H - PAD.b + 16, "text-anchor": "middle", class: "tick" }, label));
    });
    return { root, x, y, step };
  }

  // A round top for a duration axis: whole minutes or hours, divisible into four ticks.
  function niceDuration(v) {
    for (const m of [60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800, 345600, 604800]) {
      if (v <= m) return m;
    }
    return niceMax(v);
  }

  // A top for a count axis whose four ticks are whole numbers (step 1, 2 or 5 × 10^n).
  function countTop(v) {
    const raw = Math.max(v / 4, 1);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (raw <= m * p) return 4 * m * p;
    return 40 * p;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function legend(id, names) {
    const box = $(id);
    clear(box);
    names.forEach((name, i) => {
      const item = el("li");
      item.appendChild(el("span", { className: "swatch c" + (i % COLORS.length) }));
      item.appendChild(document.createTextNode(name));
      box.appendChild(item);
    });
  }

  function empty(box, text) {
    clear(box);
    box.appendChild(el("p", { className: "empty" }, text));
  }

  function stackedBars(box, labels, series) {
    clear(box);
    const totals = labels.map((_, i) => series.reduce((s, c) => s + (c.values[i] || 0), 0));
    if (!totals.some((v) => v > 0)) return empty(box, t("no_data"));
    const f = frame(labels, 0, countTop(Math.max(...totals)), (v) => num(v));
    labels.forEach((label, i) => {
      let base = 0;
      series.forEach((c, k) => {
        const v = c.values[i] || 0;
        if (!v) return;
        const top = f.y(base + v), bottom = f.y(base);
        const bar = svg("rect", {
          x: f.x(i) - f.step * 0.35, width: f.step * 0.7, y: top, height: Math.max(bottom - top, 0.5),
          fill: COLORS[k % COLORS.length], "data-channel": c.name, "data-bucket": label,
        });
        bar.appendChild(svg("title", {}, `${c.name} · ${label}: ${num(v)}`));
        f.root.appendChild(bar);
        base += v;
      });
    });
    box.appendChild(f.root);
  }

  function lines(box, labels, series, lo, hi, fmt) {
    clear(box);
    if (!series.some((s) => s.values.some((v) => v != null))) return false;
    const highest = Math.max(...series.flatMap((s) => s.values.filter((v) => v != null)));
    const top = hi != null ? hi : fmt === duration ? niceDuration(highest) : niceMax(highest);
    const f = frame(labels, lo, top, fmt);
    series.forEach((s, k) => {
      const color = COLORS[k % COLORS.length];
      let d = "";
      s.values.forEach((v, i) => {
        if (v == null) return;
        d += (d && s.values[i - 1] != null ? " L " : " M ") + f.x(i) + " " + f.y(v);
      });
      f.root.appendChild(svg("path", { d: d.trim(), class: "line", stroke: color, "data-series": s.name }));
      s.values.forEach((v, i) => {
        if (v == null) return;
        const dot = svg("circle", { cx: f.x(i), cy: f.y(v), r: 3.5, fill: color, class: "dot" });
        dot.appendChild(svg("title", {}, `${s.name} · ${labels[i]}: ${fmt(v)}`));
        f.root.appendChild(dot);
      });
    });
    box.appendChild(f.root);
    return true;
  }

  // --- rendering ---------------------------------------------------------------------------
  function tiles(tot) {
    const box = $("tiles");
    clear(box);
    const items = [
      ["t_conversations", num(tot.conversations)],
      ["t_in", num(tot.volume_in)],
      ["t_out", num(tot.volume_out)],
      ["t_frt", duration(tot.first_response.median)],
      ["t_frt_business", duration(tot.first_response.business.median)],
      ["t_resolution", duration(tot.resolution.median)],
      ["t_fcr", pct(tot.first_contact_resolution.rate)],
      ["t_backlog", num(tot.backlog && tot.backlog.open)],
      ["t_waiting", duration(tot.backlog && tot.backlog.oldest_waiting)],
      ["t_abandoned", num(tot.abandoned.count)],
      ["t_csat", tot.csat.percent == null ? "–" : num(tot.csat.percent, 1) + " %"],
      ["t_nps", num(tot.nps.score, 1)],
      ["t_sla", pct(tot.sla.attainment)],
      ["t_breaches", num(tot.sla.breaches)],
    ];
    for (const [key, value] of items) {
      const tile = el("div", { className: "tile", "data-tile": key });
      tile.appendChild(el("div", { className: "label" }, t(key)));
      tile.appendChild(el("div", { className: "value" }, value));
      box.appendChild(tile);
    }
  }

  function table(body, by) {
    $("table-title").textContent = t("table_title_" + by);
    const head = $("table-head");
    clear(head);
    // A conversation is created before anyone is assigned: per agent, count what they resolved.
    const first = by === "agent" ? "c_resolved" : "c_conversations";
    const cols = [first, "c_out", "c_frt", "c_next", "c_resolution", "c_fcr", "c_handling", "c_backlog", "c_csat", "c_nps", "c_sla"];
    head.appendChild(el("th", { scope: "col" }, t(by)));
    for (const c of cols) head.appendChild(el("th", { scope: "col" }, t(c)));
    const rows = $("table-body");
    clear(rows);
    for (const g of body.groups) {
      const tr = el("tr", { "data-key": g.key == null ? "" : g.key });
      tr.appendChild(el("th", { scope: "row" }, g.key == null ? t("unassigned") : g.key));
      const cells = [
        num(by === "agent" ? g.resolution.count : g.conversations), num(g.volume_out),
        duration(g.first_response.median),
        duration(g.next_response.median), duration(g.resolution.median),
        pct(g.first_contact_resolution.rate), duration(g.handling.median),
        num(g.backlog && g.backlog.open),
        g.csat.percent == null ? "–" : num(g.csat.percent, 1) + " %", num(g.nps.score, 1),
        pct(g.sla.attainment),
      ];
      cells.forEach((text, i) => tr.appendChild(el("td", { "data-col": cols[i] }, text)));
      rows.appendChild(tr);
    }
  }

  function render() {
    const d = S.data;
    const groups = d.byTime.groups;
    const labels = groups.map((g) => bucketLabel(g.key, d.trend));
    tiles(d.byTime.totals);
    stackedBars($("chart-volume"), labels, d.channels.map((c, k) => ({
      name: c, values: d.perChannel[k].groups.map((g) => g.volume_in),
    })));
    legend("legend-volume", d.channels);
    lines($("chart-frt"), labels, [
      { name: t("median"), values: groups.map((g) => g.first_response.median) },
      { name: t("p90"), values: groups.map((g) => g.first_response.p90) },
    ], 0, null, duration) || empty($("chart-frt"), t("no_data"));
    legend("legend-frt", [t("median"), t("p90")]);
    // Attainment over time: all targets, and each target the SLAs define.
    const share = (part) => (part.attainment == null ? null : part.attainment * 100);
    const slaSeries = [{ name: t("sla_all"), values: groups.map((g) => share(g.sla)) }];
    for (const target of ["first_response", "next_response", "resolution"]) {
      const values = groups.map((g) => share(g.sla[target]));
      if (values.some((v) => v != null)) slaSeries.push({ name: t("sla_" + target), values });
    }
    if (lines($("chart-sla"), labels, slaSeries, 0, 100, (v) => num(v, 1) + " %")) {
      legend("legend-sla", slaSeries.map((x) => x.name));
    } else {
      empty($("chart-sla"), t("no_sla"));
      clear($("legend-sla"));
    }
    lines($("chart-survey"), labels, [
      { name: t("csat"), values: groups.map((g) => g.csat.percent) },
      { name: t("nps"), values: groups.map((g) => g.nps.score) },
    ], -100, 100, (v) => num(v)) || empty($("chart-survey"), t("no_data"));
    legend("legend-survey", [t("csat"), t("nps")]);
    table(d.table, d.tableBy);
  }

  async function downloadCsv() {
    let resp;
    try {
      resp = await fetch(query({ group_by: $("table-by").value, format: "csv" }), {
        headers: { Authorization: "Bearer " + S.token },
      });
    } catch (e) { status(e.message, true); return; }
    if (!resp.ok) { status("HTTP " + resp.status, true); return; }
    const url = URL.createObjectURL(await resp.blob());
    const a = el("a", { href: url, download: `switchboard-${$("from").value}-${$("to").value}.csv` });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // --- start -------------------------------------------------------------------------------
  function isoDay(d) {
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const saved = localStorage.getItem(LANG_KEY);
    S.lang = saved || ((navigator.language || "en").toLowerCase().startsWith("de") ? "de" : "en");
    const today = new Date();
    $("to").value = isoDay(today);
    $("from").value = isoDay(new Date(today.getTime() - 6 * 86400000));
    applyLanguage();
    $("lang").addEventListener("change", () => {
      S.lang = $("lang").value;
      localStorage.setItem(LANG_KEY, S.lang);
      applyLanguage();
    });
    $("signin").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("token").value.trim()); });
    $("signout").addEventListener("click", signOut);
    $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
    $("trend").addEventListener("change", load);
    $("table-by").addEventListener("change", load);
    $("csv").addEventListener("click", downloadCsv);
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) signIn(token);
  });
})();
