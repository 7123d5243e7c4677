/*
 * Switchboard agent console: one page, no framework, no build step. It uses only the
 * public HTTP API (bearer token) and the event stream /v1/events, so anything it does a
 * helpdesk integration can do too. All text goes into the page with textContent; words
 * come from i18n.js (English, German). What the gateway offers is read from its OpenAPI
 * document, so the console hides what a gateway does not have.
 */
"use strict";

(function () {
  const TOKEN_KEY = "switchboard-console-token";
  const NOTIFY_KEY = "switchboard-console-notify";
  const I = window.SwitchboardI18n;
  const t = I.t;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  const S = {
    // Bumped by every change the agent makes to a contact (save, merge, undo): a contact
    // fetched by a load that started before it is older than the cached copy, not newer.
    contactSaves: 0,
    token: null,
    role: null,        // agent, supervisor, admin
    name: null,
    me: null,          // agent id (null for admin/supervisor tokens without one)
    agents: [],
    queues: [],
    features: new Set(),   // "METHOD /path" of the gateway's API
    view: "inbox",
    cursor: null,
    current: null,     // open conversation id
    conv: null,        // the open conversation as last loaded
    contacts: new Map(),   // contact id → contact
    unread: new Map(),     // conversation id → unread count (server, or news seen live)
    countedUnread: new Set(),  // ids the server's counts already include
    lists: [],             // conversations shown in the lists, for j/k
    mineIds: new Set(),
    events: null,
    eventsAttempt: 0,
    listTimer: null,
    convTimer: null,
    typingSentAt: 0,
    typingIdle: null,
    customerTyping: null,
    viewingTimer: null,
    viewers: [],
    canned: null,
    cannedIndex: 0,
    searching: false,
    routingLive: new Map(),  // conversation id → {reasons, localized} of its last assignment seen live
    stopped: true,
  };

  // --- small helpers ----------------------------------------------------------------------
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v == null) continue;
      if (k === "className") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    if (text != null) node.textContent = String(text);
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function option(select, value, label) { select.appendChild(el("option", { value }, label)); }

  function status(text, isError) {
    const box = $("status");
    box.textContent = text || "";
    box.classList.toggle("error", !!isError);
    if (text && !isError) setTimeout(() => { if (box.textContent === text) box.textContent = ""; }, 4000);
  }

  const has = (method, path) => S.features.has(method + " " + path);
  const word = (prefix, value) => (value ? t(prefix + "." + value) : "");
  const convPath = (id, rest) => "/v1/conversations/" + enc(id) + (rest || "");

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(method, path, body, token) {
    const headers = { Authorization: "Bearer " + (token || S.token) };
    const init = { method, headers };
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try { resp = await fetch(path, init); }
    catch (e) { throw new ApiError(0, "network", t("error.network")); }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      if (resp.status === 401 && S.role) signOut(t("signin.expired"));
      throw new ApiError(resp.status, err.code || "http_error", err.message || ("HTTP " + resp.status));
    }
    return data;
  }

  // --- names ------------------------------------------------------------------------------
  function agentName(id) {
    if (!id) return "";
    const a = S.agents.find((x) => x.id === id);
    return a && a.name ? a.name : id;
  }

  // Bidi controls (marks, embeddings, overrides, isolates) in a file name: "\u202Efdp.exe"
  // would show as "exe.pdf". Shown without them; a download keeps the name as it came.
  const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;
  function fileLabel(name) {
    return String(name == null ? "" : name).replace(BIDI_CONTROLS, "");
  }

  function contactLabel(c) {
    if (!c) return t("msg.customer");
    if (c.name) return c.name;
    const ids = c.identities || [];
    for (const kind of ["email", "phone", "sms", "whatsapp", "telegram"]) {
      const found = ids.find((i) => i.kind === kind);
      if (found) return found.address;
    }
    const claim = (c.claims || []).find((i) => i.kind === "email");
    if (claim) return claim.address;
    const any = ids.find((i) => i.kind !== "webchat");
    if (any) return any.kind + ": " + any.address;
    const tail = (ids[0] ? ids[0].address : c.id).slice(-6);
    return t("msg.customer_short", { id: tail });
  }

  // --- sign in ----------------------------------------------------------------------------
  async function loadFeatures(token) {
    try {
      const doc = await api("GET", "/v1/openapi.json", undefined, token);
      for (const [path, ops] of Object.entries(doc.paths || {})) {
        for (const method of Object.keys(ops)) S.features.add(method.toUpperCase() + " " + path);
      }
    } catch (e) { /* a gateway without the document: only the basics */ }
  }

  async function signIn(token) {
    const err = $("signin-error");
    err.hidden = true;
    let me;
    try {
      me = await api("GET", "/v1/me", undefined, token);
    } catch (e) {
      err.textContent = e.status === 401 ? t("signin.invalid") : e.message;
      err.hidden = false;
      return false;
    }
    const role = me.role;
    if (!(role === "admin" || role === "supervisor" || (role === "agent" && me.agent))) {
      err.textContent = t("signin.not_console");
      err.hidden = false;
      return false;
    }
    S.features = new Set();
    await loadFeatures(token);
    learnFeatures();
    if (role === "supervisor" && !S.listApi) {
      // A gateway before issue 14 lets supervisors read the reports only.
      err.textContent = t("signin.not_console");
      err.hidden = false;
      return false;
    }
    let agents = [];
    try { agents = (await api("GET", "/v1/agents", undefined, token)).agents; }
    catch (e) { if (e.status !== 403) { err.textContent = e.message; err.hidden = false; return false; } }
    S.token = token;
    S.role = role;
    S.name = me.name;
    S.me = role === "agent" ? me.agent : (me.agent || null);
    S.myQueues = me.queues || null;
    S.agentName = me.agent_name || null;
    S.reader = me.reader || me.agent || me.name;
    S.agents = agents;
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* private mode */ }
    startApp();
    return true;
  }

  function signOut(message) {
    S.stopped = true;
    leaveViewing();
    stopHeartbeat();
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
    if (S.events) { try { S.events.close(); } catch (e) { /* ignore */ } S.events = null; }
    S.token = null; S.me = null; S.role = null; S.current = null; S.conv = null;
    S.features = new Set();
    S.canned = null;
    $("app").hidden = true;
    $("session").hidden = true;
    $("signin-view").hidden = false;
    $("token").value = "";
    document.title = "Switchboard";
    if (message) { $("signin-error").textContent = message; $("signin-error").hidden = false; }
    $("token").focus();
  }

  const supervising = () => S.role === "admin" || S.role === "supervisor";

  function startApp() {
    S.stopped = false;
    $("signin-view").hidden = true;
    $("app").hidden = false;
    $("session").hidden = false;
    $("presence-box").hidden = !S.me;
    $("reports-link").hidden = !supervising();
    const queues = new Set(S.myQueues || []);
    for (const a of S.agents) for (const q of a.queues || []) queues.add(q);
    S.queues = [...queues].sort();
    S.view = supervising() ? "all" : "inbox";
    renderChrome();
    $("view").value = S.view;
    showView();
    connectEvents();
    refreshLists();
    startHeartbeat();
  }

  // Presence heartbeat: while the console is open it tells the gateway every third of the
  // heartbeat's TTL that its agent is here; when the beats stop (tab closed, network gone)
  // the gateway sets the agent offline.
  function startHeartbeat() {
    stopHeartbeat();
    const beat = async () => {
      if (S.stopped || !S.me) return;
      let every = 10000;
      try {
        const r = await api("POST", "/v1/agents/" + encodeURIComponent(S.me) + "/heartbeat");
        if (r && r.ttl) every = Math.max(1000, (r.ttl * 1000) / 3);
      } catch (e) { /* tried again at the next beat */ }
      if (!S.stopped) S.heartbeat = setTimeout(beat, every);
    };
    beat();
  }

  function stopHeartbeat() {
    if (S.heartbeat) clearTimeout(S.heartbeat);
    S.heartbeat = null;
  }

  /** Everything whose words depend on the language or the agents: called again on a switch. */
  function renderChrome() {
    I.apply();
    const agent = S.agents.find((a) => a.id === S.me);
    $("me").textContent = S.me ? (agent && agent.name ? agent.name : S.me) + " (" + S.me + ")" : S.name || "";
    $("role").textContent = S.role ? t("role." + S.role) : "";
    $("role").hidden = S.role === "agent";
    if (agent) $("presence").value = agent.presence;
    renderNotifyButton();

    const view = $("view");
    const keep = view.value || S.view;
    clear(view);
    const views = supervising() ? ["all", "unassigned", "mine", "resolved"] : ["inbox", "mine", "resolved"];
    if (has("GET", "/v1/conversations") && S.snoozeSupported) views.push("snoozed");
    if (supervising() && S.me) views.unshift("inbox");
    for (const v of views) option(view, v, t("view." + v) + countLabel(v));
    view.value = views.includes(keep) ? keep : views[0];

    fillFilter($("f-status"), ["", "open", "assigned", "pending", "resolved", "closed"].concat(S.snoozeSupported ? ["snoozed"] : []), "status");
    fillFilter($("f-queue"), [""].concat(S.queues), null);
    fillFilter($("f-channel"), [""].concat(S.channels || []), null);
    const assignees = $("f-assignee");
    const aKeep = assignees.value;
    clear(assignees);
    option(assignees, "", t("filters.any"));
    if (S.me) option(assignees, S.me, t("filters.me"));
    if (S.listApi) option(assignees, "none", t("filters.none"));
    for (const a of S.agents) if (a.id !== S.me) option(assignees, a.id, a.name || a.id);
    assignees.value = aKeep;
    fillFilter($("f-sla"), ["", "breached", "warning", "ok"], "sla");
    fillFilter($("f-sort"), ["", "-last_message_at", "created_at", "-priority", "sla_due"], "sort");
    fillFilter($("f-waiting"), ["", "true", "false"], "waiting");
    fillFilter($("f-unread"), ["", "true"], "unread");
    for (const id of ["f-sla", "f-sort", "f-tag", "f-waiting", "f-unread"]) {
      $(id).hidden = !S.listApi;
      const label = document.querySelector('label[for="' + id + '"]');
      if (label) label.hidden = !S.listApi;
    }

    const snooze = $("snooze-for");
    clear(snooze);
    for (const k of ["1h", "4h", "tomorrow", "week"]) option(snooze, k, t("snooze." + k));
    const prio = $("priority");
    const pKeep = prio.value;
    clear(prio);
    for (const p of ["low", "normal", "high", "urgent"]) option(prio, p, t("priority." + p));
    prio.value = pKeep || "normal";

    const sel = $("transfer-queue");
    const tKeep = sel.value;
    clear(sel);
    const qg = el("optgroup", { label: t("queues.group") });
    for (const q of S.queues) qg.appendChild(el("option", { value: q }, q));
    sel.appendChild(qg);
    if (S.transferAgent) {
      const ag = el("optgroup", { label: t("agents.group") });
      for (const a of S.agents) if (a.id !== S.me) ag.appendChild(el("option", { value: "agent:" + a.id }, a.name || a.id));
      sel.appendChild(ag);
    }
    if (tKeep) sel.value = tKeep;
    const who = $("assign-agent");
    const wKeep = who.value;
    clear(who);
    for (const a of S.agents) option(who, a.id, a.name || a.id);
    if (wKeep) who.value = wKeep;

    renderHelp();
    setReplyMode($("mode-note").checked ? "note" : "reply");
    const byFeature = [
      ["snooze-for", S.snoozeSupported], ["snooze", S.snoozeSupported],
      ["priority", !!S.priorityPath], ["tag-form", !!S.tagsPath],
    ];
    for (const [id, ok] of byFeature) {
      $(id).hidden = !ok;
      const label = document.querySelector('label[for="' + id + '"]');
      if (label) label.hidden = !ok;
    }
    $("search-form").hidden = !has("GET", "/v1/search");
    $("new-conv-btn").hidden = !S.startApi;
    document.querySelector(".reply-mode").hidden = !S.notesApi;
    $("attach").parentElement.hidden = !S.attachApi;
    $("merge-form").hidden = !S.mergeApi;
    $("merge-title").hidden = !S.mergeApi;
    $("contact-form").classList.toggle("readonly", !has("PATCH", "/v1/contacts/{id}"));
    if (S.conv) renderConversation(S.conv, S.contacts.get(S.conv.contact_id), S.earlier ? S.earlier.items : []);
    if (S.lastLists) renderLists(S.lastLists);
    updateTitle();
  }

  function fillFilter(select, values, prefix) {
    const keep = select.value;
    clear(select);
    for (const v of values) option(select, v, v === "" ? t("filters.any") : prefix ? t(prefix + "." + v) : v);
    select.value = values.includes(keep) ? keep : "";
  }

  function learnFeatures() {
    S.listApi = has("GET", "/v1/conversations/counts");
    S.snoozeSupported = has("POST", "/v1/conversations/{id}/snooze");
    S.priorityPath = has("POST", "/v1/conversations/{id}/priority") ? "POST"
      : has("PUT", "/v1/conversations/{id}/priority") ? "PUT"
      : has("PATCH", "/v1/conversations/{id}") ? "PATCH" : null;
    S.tagsPath = has("POST", "/v1/conversations/{id}/tags");
    S.readApi = has("POST", "/v1/conversations/{id}/read");
    S.notesApi = has("POST", "/v1/conversations/{id}/notes");
    S.portalApi = has("POST", "/v1/conversations/{id}/portal-link");
    S.cannedApi = has("GET", "/v1/canned-replies");
    S.attachApi = S.notesApi;  // the same branch brought multipart replies
    S.mergeApi = has("POST", "/v1/contacts/{id}/merge");
    S.splitApi = has("POST", "/v1/contacts/{id}/identities/{identity}/split");
    S.viewingApi = has("POST", "/v1/conversations/{id}/viewing");
    S.transferAgent = S.listApi;  // the same branch lets a transfer name an agent
    S.startApi = has("POST", "/v1/conversations");  // proactive outreach (issue 15)
  }

  // --- a new conversation (proactive outreach) ---------------------------------------------
  async function showNewConversation(on) {
    $("new-conv").hidden = !on;
    if (!on) { $("new-conv-btn").focus(); return; }
    $("nc-error").hidden = true;
    const select = $("nc-channel");
    const keep = select.value;
    let names = S.channels || [];
    try {
      const ready = await fetch("/readyz").then((r) => r.json());
      names = Object.keys((ready && ready.channels) || {}).sort();
    } catch (e) { /* the channels seen in the lists */ }
    clear(select);
    for (const name of names) option(select, name, name);
    if (names.includes(keep)) select.value = keep;
    $("nc-to").focus();
  }

  async function startConversation(ev) {
    ev.preventDefault();
    const body = { channel: $("nc-channel").value, to: { address: $("nc-to").value.trim() },
      text: $("nc-text").value };
    const name = $("nc-name").value.trim();
    const subject = $("nc-subject").value.trim();
    if (name) body.to.name = name;
    if (subject) body.subject = subject;
    try {
      const conv = await api("POST", "/v1/conversations", body);
      $("new-conv-form").reset();
      showNewConversation(false);
      status(t("new.done"));
      scheduleLists();
      await openConversation(conv.id);
    } catch (e) {
      const key = "new.error." + e.code;
      const box = $("nc-error");
      box.textContent = t(key) !== key ? t(key) : t("new.error.other", { error: e.message });
      box.hidden = false;
    }
  }

  // --- lists ------------------------------------------------------------------------------
  function myQueues() {
    const agent = S.agents.find((a) => a.id === S.me);
    if (agent) return agent.queues || [];
    return S.myQueues || S.queues;
  }

  function filterParams() {
    const p = new URLSearchParams();
    for (const node of document.querySelectorAll("[data-filter]")) {
      const v = node.value.trim();
      if (v && !node.hidden) p.set(node.getAttribute("data-filter"), v);
    }
    return p;
  }

  function viewParams(view) {
    const p = filterParams();
    const status = (v) => { if (!p.has("status")) p.set("status", v); };
    if (view === "mine" && S.me && !p.has("assignee")) p.set("assignee", S.me);
    if (view === "mine" && S.listApi) status("active");
    if (view === "unassigned") { status("open"); if (S.listApi && !p.has("assignee")) p.set("assignee", "none"); }
    if (view === "all" && S.listApi) status("active");
    if (view === "resolved") status("resolved");
    if (view === "snoozed") status("snoozed");
    if (!p.has("limit")) p.set("limit", "50");
    return p;
  }

  function showView() {
    const inbox = S.view === "inbox";
    $("inbox").hidden = inbox ? false : true;
    $("results-box").hidden = inbox;
    $("results-name").textContent = inbox ? "" : t("view." + S.view);
  }

  function countLabel(view) {
    const c = S.counts;
    if (!c) return "";
    const views = c.views || {};
    const v = views[view === "inbox" ? "mine" : view];
    const n = v ? v.total : c.status ? c.status[view] : null;
    const unread = v && v.unread ? " · " + t("unread.label", { n: v.unread }) : "";
    return typeof n === "number" ? " (" + n + unread + ")" : "";
  }

  async function refreshLists() {
    if (S.stopped) return;
    try {
      const wantInbox = S.view === "inbox";
      const [agents, offers, counts] = await Promise.all([
        api("GET", "/v1/agents").catch(() => ({ agents: S.agents })),
        S.me ? api("GET", "/v1/offers").catch(() => ({ offers: [] })) : { offers: [] },
        S.listApi ? api("GET", "/v1/conversations/counts").catch(() => null) : null,
      ]);
      S.agents = agents.agents;
      S.counts = counts;
      S.countedUnread = new Set();
      const meNow = S.agents.find((a) => a.id === S.me);
      if (meNow && document.activeElement !== $("presence")) $("presence").value = meNow.presence;
      let mine = [];
      let open = [];
      let results = null;
      if (wantInbox || S.me) {
        const pages = await Promise.all([
          S.me ? api("GET", "/v1/conversations?assignee=" + enc(S.me) + "&limit=200") : { conversations: [] },
          ...myQueues().map((q) => api("GET", "/v1/conversations?status=open&queue=" + enc(q) + "&limit=200")),
        ]);
        mine = pages[0].conversations.filter((c) => ["assigned", "pending", "open"].includes(c.status));
        const seen = new Set();
        for (const page of pages.slice(1)) {
          for (const c of page.conversations) if (!seen.has(c.id)) { seen.add(c.id); open.push(c); }
        }
        open.sort((a, b) => (a.created_at < b.created_at ? -1 : 1));  // oldest first: who waits longest
      }
      if (!wantInbox) {
        const page = await api("GET", "/v1/conversations?" + viewParams(S.view).toString());
        results = { conversations: page.conversations, next: page.next_cursor };
        S.cursor = page.next_cursor || null;
      }
      S.mineIds = new Set(mine.map((c) => c.id));
      for (const c of [...mine, ...open, ...(results ? results.conversations : [])]) {
        if (typeof c.unread === "number") S.unread.set(c.id, c.id === S.current && !document.hidden ? 0 : c.unread);
        if (c.unread > 0) S.countedUnread.add(c.id);
      }
      S.lastLists = { offers: offers.offers, mine, open, results };
      const channels = new Set(S.channels || []);
      for (const c of [...mine, ...open, ...(results ? results.conversations : [])]) channels.add(c.last_channel);
      if (channels.size !== (S.channels || []).length) {
        S.channels = [...channels].sort();
        fillFilter($("f-channel"), [""].concat(S.channels), null);
      }
      renderLists(S.lastLists);
      for (const o of $("view").options) o.textContent = t("view." + o.value) + countLabel(o.value);
      await loadContacts([...mine, ...open, ...(results ? results.conversations : [])].map((c) => c.contact_id));
    } catch (e) {
      if (e.status !== 401) status(t("error.load_lists", { error: e.message }), true);
    }
  }

  async function loadMore() {
    if (!S.cursor || !S.lastLists || !S.lastLists.results) return;
    const p = viewParams(S.view);
    p.set("cursor", S.cursor);
    try {
      const page = await api("GET", "/v1/conversations?" + p.toString());
      S.lastLists.results.conversations.push(...page.conversations);
      S.cursor = page.next_cursor || null;
      S.lastLists.results.next = S.cursor;
      renderLists(S.lastLists);
      await loadContacts(page.conversations.map((c) => c.contact_id));
    } catch (e) { status(t("error.load_lists", { error: e.message }), true); }
  }

  function renderLists(lists) {
    renderOffers(lists.offers, lists.open);
    renderList($("mine"), $("mine-empty"), $("mine-count"), lists.mine);
    renderList($("waiting"), $("waiting-empty"), $("waiting-count"), lists.open);
    if (lists.results) {
      renderList($("results"), $("results-empty"), $("results-count"), lists.results.conversations);
      $("more").hidden = !lists.results.next;
    }
    updateTitle();
  }

  /** Cache a contact fetched by a load that started at `saves`, unless the agent changed a
   * contact meanwhile (then the cached copy is newer); returns the copy to show. */
  function fetchedContact(c, saves) {
    if (saves === S.contactSaves || !S.contacts.has(c.id)) S.contacts.set(c.id, c);
    return S.contacts.get(c.id);
  }

  function savedContact(c) {
    S.contactSaves += 1;
    S.contacts.set(c.id, c);
  }

  async function loadContacts(ids) {
    const saves = S.contactSaves;
    const missing = [...new Set(ids)].filter((id) => id && !S.contacts.has(id));
    await Promise.all(missing.map(async (id) => {
      try { fetchedContact(await api("GET", "/v1/contacts/" + enc(id)), saves); }
      catch (e) { /* shown as "Customer" */ }
    }));
    for (const node of document.querySelectorAll("[data-contact]")) {
      const c = S.contacts.get(node.getAttribute("data-contact"));
      if (c) node.textContent = contactLabel(c);
    }
  }

  function unreadOf(id) { return S.unread.get(id) || 0; }

  /** Conversations with unread customer messages: the server's count when it keeps read markers. */
  function totalUnread() {
    const views = S.counts && S.counts.views;
    if (views) {
      let n = supervising() ? (views.all ? views.all.unread : 0)
        : (views.mine ? views.mine.unread : 0) + (views.unassigned ? views.unassigned.unread : 0);
      // news seen live since the counts were fetched; the open conversation is being read
      for (const [id, k] of S.unread) if (k > 0 && !S.countedUnread.has(id)) n += 1;
      if (S.current && S.countedUnread.has(S.current) && unreadOf(S.current) === 0) n -= 1;
      return Math.max(0, n);
    }
    let n = 0;
    const ids = new Set();
    const l = S.lastLists;
    if (l) for (const c of [...l.mine, ...l.open]) ids.add(c.id);
    for (const id of S.mineIds) ids.add(id);
    for (const id of ids) if (unreadOf(id) > 0) n += 1;
    return n;
  }

  function updateTitle() {
    const n = S.role ? totalUnread() : 0;
    document.title = (n > 0 ? "(" + n + ") " : "") + "Switchboard";
  }

  function renderList(ul, empty, count, convs) {
    clear(ul);
    empty.hidden = convs.length > 0;
    count.textContent = convs.length ? "(" + convs.length + ")" : "";
    for (const c of convs) ul.appendChild(el("li")).appendChild(convItem(c));
  }

  function convItem(c, snippet) {
    const btn = el("button", {
      type: "button", className: "conv-item", "data-id": c.id,
      "aria-current": c.id === S.current ? "true" : false,
    });
    const known = S.contacts.get(c.contact_id);
    btn.appendChild(el("span", { className: "who", "data-contact": c.contact_id || false },
      known || !c.contact_name ? contactLabel(known) : c.contact_name));
    const n = unreadOf(c.id);
    if (n > 0) btn.appendChild(el("span", { className: "badge unread", "aria-label": t("unread.label", { n }) }, n));
    const info = [c.last_channel, c.queue, word("status", c.status)];
    if (c.assignee && c.assignee !== S.me) info.push(agentName(c.assignee));
    if (c.priority && c.priority !== "normal") info.push(word("priority", c.priority));
    btn.appendChild(el("span", { className: "info" }, info.filter(Boolean).join(" · ")));
    btn.appendChild(el("time", { className: "time", datetime: c.updated_at, title: I.full(c.updated_at) }, I.relative(c.updated_at)));
    if (c.tags && c.tags.length) {
      const tags = el("span", { className: "tags small" });
      for (const tag of c.tags) tags.appendChild(el("span", { className: "tag" }, tag));
      btn.appendChild(tags);
    }
    if (snippet) btn.appendChild(highlighted(snippet));
    btn.addEventListener("click", () => openConversation(c.id));
    return btn;
  }

  /** A search snippet whose hits come as <mark>…</mark> in escaped text: built as nodes. */
  function highlighted(snippet) {
    const box = el("span", { className: "snippet" });
    const unescape = (s) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, "\"")
      .replace(/&#x27;|&#39;/g, "'").replace(/&amp;/g, "&");
    let inMark = false;
    for (const part of String(snippet).split(/(<mark>|<\/mark>)/)) {
      if (part === "<mark>") { inMark = true; continue; }
      if (part === "</mark>") { inMark = false; continue; }
      if (!part) continue;
      box.appendChild(inMark ? el("mark", null, unescape(part)) : document.createTextNode(unescape(part)));
    }
    return box;
  }

  // Offers (live channels): a conversation offered to this agent, to accept or reject
  // before it expires; then it goes to the next agent.
  function renderOffers(offers, open) {
    const ul = $("offers");
    clear(ul);
    $("offers-box").hidden = offers.length === 0;
    $("offers-count").textContent = offers.length ? "(" + offers.length + ")" : "";
    const byId = new Map(open.map((c) => [c.id, c]));
    for (const o of offers) {
      const c = byId.get(o.conversation_id);
      const li = el("li", { className: "offer", "data-offer": o.conversation_id });
      li.appendChild(el("span", { className: "who", "data-contact": c ? c.contact_id : false },
        c ? contactLabel(S.contacts.get(c.contact_id)) : t("msg.customer")));
      li.appendChild(el("span", { className: "info" }, [o.queue, c ? c.last_channel : ""].filter(Boolean).join(" · ")));
      li.appendChild(el("span", { className: "expires", "data-expires": o.expires_at }));
      const accept = el("button", { type: "button", className: "primary accept" }, t("offers.accept"));
      const reject = el("button", { type: "button", className: "secondary reject" }, t("offers.reject"));
      accept.addEventListener("click", () => answerOffer(o.conversation_id, "accept"));
      reject.addEventListener("click", () => answerOffer(o.conversation_id, "reject"));
      li.appendChild(accept);
      li.appendChild(reject);
      ul.appendChild(li);
    }
    tickOffers();
  }

  function tickOffers() {
    for (const node of document.querySelectorAll("[data-expires]")) {
      const left = Math.max(0, Math.round(Number(node.getAttribute("data-expires")) - Date.now() / 1000));
      node.textContent = left > 0 ? t("offers.expires", { n: left }) : t("offers.expired");
    }
  }

  async function answerOffer(id, what) {
    try {
      await api("POST", convPath(id, "/offer/" + what));
      status(what === "accept" ? t("offers.accepted") : t("offers.rejected"));
      if (what === "accept") { scheduleLists(); await openConversation(id); return; }
    } catch (e) {
      status(e.status === 409 ? t("offers.too_late") : e.message, true);
    }
    scheduleLists();
  }

  function scheduleLists() {
    clearTimeout(S.listTimer);
    S.listTimer = setTimeout(refreshLists, 150);
  }

  // --- search -----------------------------------------------------------------------------
  async function runSearch(q) {
    q = q.trim();
    if (!q) { closeSearch(); return; }
    let body;
    try { body = await api("GET", "/v1/search?q=" + enc(q) + "&limit=50"); }
    catch (e) { status(e.message, true); return; }
    const hits = body.results || body.hits || [];
    const ul = $("search-results");
    clear(ul);
    $("search-box").hidden = false;
    $("inbox").hidden = true;
    $("results-box").hidden = true;
    S.searching = true;
    $("search-empty").hidden = hits.length > 0;
    $("search-count").textContent = hits.length ? "(" + hits.length + ")" : "";
    const seen = new Set();
    for (const h of hits) {
      const conv = h.conversation || { id: h.conversation_id, contact_id: h.contact_id, last_channel: h.channel,
        queue: h.queue, status: h.status, updated_at: h.created_at || h.updated_at, tags: [] };
      if (!conv.id || seen.has(conv.id + (h.message_id || ""))) continue;
      seen.add(conv.id + (h.message_id || ""));
      ul.appendChild(el("li")).appendChild(convItem(conv, h.snippet || h.highlight || ""));
    }
    await loadContacts(hits.map((h) => (h.conversation && h.conversation.contact_id) || h.contact_id));
  }

  function closeSearch() {
    S.searching = false;
    $("search-box").hidden = true;
    $("search").value = "";
    showView();
  }

  // --- one conversation -------------------------------------------------------------------
  async function openConversation(id) {
    if (S.current !== id) leaveViewing();
    S.current = id;
    // Where the agent is while it loads: a field clicked meanwhile keeps the focus (the
    // reply box taking it would put what the agent types there into the reply).
    const focused = document.activeElement;
    $("conv").removeAttribute("data-loaded");
    S.unread.set(id, 0);
    for (const b of document.querySelectorAll(".conv-item")) {
      if (b.getAttribute("data-id") === id) {
        b.setAttribute("aria-current", "true");
        const badge = b.querySelector(".badge.unread");
        if (badge) badge.remove();
      } else b.removeAttribute("aria-current");
    }
    updateTitle();
    $("placeholder").hidden = true;
    $("conv").hidden = false;
    $("contact-panel").hidden = false;
    $("typing").hidden = true;
    $("app").setAttribute("data-pane", "conv");
    S.viewers = [];
    renderViewers();
    await refreshConversation(true);
    startViewing();
    scheduleLists();
    if (S.current !== id) return;  // another conversation was opened meanwhile
    const now = document.activeElement;
    if (now === focused || now === document.body || now === null) $("reply-text").focus();
    $("conv").setAttribute("data-loaded", id);
  }

  /** Read up to the last message shown, while the agent can see it (not in a hidden tab). */
  async function markRead(conv) {
    if (!S.readApi || document.hidden || !conv.messages || !conv.messages.length) return;
    const last = conv.messages[conv.messages.length - 1];
    if (S.readSent === last.id) return;
    S.readSent = last.id;
    try {
      await api("POST", convPath(conv.id, "/read"), { message_id: last.id });
      if (S.countedUnread.has(conv.id)) scheduleLists();  // the server's counts change
    } catch (e) { S.readSent = null; }
  }

  async function refreshConversation(full) {
    const id = S.current;
    if (!id) return;
    const saves = S.contactSaves;
    let conv;
    try { conv = await api("GET", convPath(id)); }
    catch (e) { status(t("error.load_conv", { error: e.message }), true); return; }
    if (S.current !== id) return;
    let contact = S.contacts.get(conv.contact_id);
    if (!contact || full || !contact.conversations) {
      try { contact = fetchedContact(await api("GET", "/v1/contacts/" + enc(conv.contact_id)), saves); }
      catch (e) { contact = contact || null; }
    }
    // The customer's whole history: earlier conversations (any channel), then this one.
    let earlier = S.earlier && S.earlier.for === id && !full ? S.earlier.items : null;
    if (!earlier) {
      earlier = [];
      try {
        const list = await api("GET", "/v1/conversations?contact=" + enc(conv.contact_id) + "&limit=10");
        const others = list.conversations.filter((c) => c.id !== id).reverse();
        for (const c of others) {
          try { earlier.push(await api("GET", convPath(c.id))); }
          catch (e) { /* skip */ }
        }
      } catch (e) { /* history is a bonus */ }
      S.earlier = { for: id, items: earlier };
    }
    if (S.current !== id) return;
    S.conv = conv;
    if (saves !== S.contactSaves) contact = S.contacts.get(conv.contact_id) || contact;  // saved meanwhile
    renderConversation(conv, contact, earlier);
    renderContact(contact);
    if (!document.hidden) S.unread.set(id, 0);
    updateTitle();
    markRead(conv);
  }

  function renderConversation(conv, contact, earlier) {
    $("conv-title").textContent = contactLabel(contact);
    const ids = contact ? (contact.identities || [])
      .map((i) => i.kind + ": " + i.address + (i.verified === false ? " " + t("meta.unverified") : ""))
      .concat((contact.claims || []).map((c) => t("meta.claims", { address: c.address })))
      .join(", ") : "";
    const esc = conv.escalation;
    $("conv-meta").textContent = [
      word("status", conv.status), t("meta.queue", { queue: conv.queue }),
      conv.assignee ? t("meta.assigned_to", { name: agentName(conv.assignee) }) : t("meta.unassigned"),
      conv.priority && conv.priority !== "normal" ? t("meta.priority", { p: word("priority", conv.priority) }) : "",
      conv.snoozed_until ? t("meta.snoozed_until", { time: I.when(conv.snoozed_until) }) : "",
      conv.offer ? t("meta.offered_to", { name: agentName(conv.offer.agent) }) : "",
      esc && esc.of ? t("meta.escalation", { step: esc.step, of: esc.of }) : "",
      t("meta.via", { channel: conv.last_channel }), ids,
    ].filter(Boolean).join(" · ");
    renderTags(conv);
    renderRouting(conv);

    const mine = S.me && conv.assignee === S.me;
    const active = ["open", "assigned", "pending", "snoozed"].includes(conv.status);
    const may = supervising() || mine || !conv.assignee;
    $("take").hidden = !(active && S.me && conv.assignee !== S.me && (supervising() || !conv.assignee));
    $("assign-box").hidden = !(active && supervising());
    $("resolve").hidden = !active;
    $("resolve").disabled = !may;
    $("reopen").hidden = active || !has("POST", "/v1/conversations/{id}/reopen");
    $("wake").hidden = !conv.snoozed_until || !S.snoozeSupported;
    // Issue 15: the customer portal link, sent to the customer in this conversation.
    $("portal-link").hidden = !S.portalApi || conv.status === "closed";
    $("portal-link").disabled = !may;
    $("transfer").disabled = !active || !may;
    $("transfer-queue").disabled = $("transfer").disabled;
    $("snooze").disabled = !active || !may;
    $("priority").disabled = !may;
    if (document.activeElement !== $("priority")) $("priority").value = conv.priority || "normal";
    if (!S.queues.includes(conv.queue)) {
      S.queues.push(conv.queue);
      $("transfer-queue").querySelector("optgroup").appendChild(el("option", { value: conv.queue }, conv.queue));
    }
    // Preset the pickers for each newly opened conversation only: a live refresh must not
    // undo what the agent is choosing.
    if (S.pickersFor !== conv.id) {
      S.pickersFor = conv.id;
      $("transfer-queue").value = conv.queue;
      if (conv.assignee) $("assign-agent").value = conv.assignee;
      $("snooze-for").value = "1h";
    }

    const log = $("messages");
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    clear(log);
    const name = contactLabel(contact);
    for (const past of earlier) {
      log.appendChild(el("li", { className: "divider" },
        t("msg.earlier", { channel: past.channel, status: word("status", past.status), time: I.when(past.created_at) })));
      for (const m of past.messages) log.appendChild(renderMessage(m, name));
    }
    if (earlier.length) log.appendChild(el("li", { className: "divider" }, t("msg.this", { time: I.when(conv.created_at) })));
    for (const m of conv.messages) log.appendChild(renderMessage(m, name));
    if (stick || !S.rendered || S.rendered !== conv.id) log.scrollTop = log.scrollHeight;
    S.rendered = conv.id;
  }

  function renderTags(conv) {
    const box = $("conv-tags");
    clear(box);
    for (const tag of conv.tags || []) {
      const chip = el("span", { className: "tag", "data-tag": tag }, tag);
      if (S.tagsPath) {
        const x = el("button", { type: "button", className: "tag-remove", "aria-label": t("actions.remove_tag", { tag }) }, "×");
        x.addEventListener("click", () => removeTag(tag));
        chip.appendChild(x);
      }
      box.appendChild(chip);
    }
  }

  /** Routing reasons in the console's language; English (`reasons`) when there are none in it. */
  function reasonsIn(reasons, localized) {
    const mine = localized && localized[I.lang()];
    return mine && mine.length ? mine : reasons || [];
  }

  function renderRouting(conv) {
    const live = S.routingLive.get(conv.id);
    const routing = conv.routing || {};
    const reasons = live ? reasonsIn(live.reasons, live.localized) : reasonsIn(routing.reasons, routing.reasons_localized);
    $("conv-routing").hidden = reasons.length === 0;
    const ul = $("routing-reasons");
    clear(ul);
    for (const r of reasons) ul.appendChild(el("li", null, r));
    const summary = $("conv-routing").querySelector("summary");
    const rule = conv.routing && conv.routing.rule;
    summary.textContent = t("routing.why") + (rule ? " — " + rule : "");
  }

  function renderMessage(m, customer) {
    const note = m.private === true || m.direction === "note";
    const li = el("li", { className: "msg " + (note ? "note" : m.direction === "in" ? "in" : "out"), "data-id": m.id });
    const head = el("div", { className: "head" });
    const who = m.direction === "in" ? customer
      : (m.sender && m.sender.type === "agent" ? agentName(m.sender.id)
        : (m.sender && (m.sender.id || m.sender.type)) || t("msg.system"));
    head.appendChild(el("strong", null, who));
    if (note) head.appendChild(el("span", { className: "note-label" }, t("msg.note")));
    else if (m.channel) head.appendChild(el("span", { className: "channel" }, m.channel));
    // Issue 15: an answer the customer wrote in the customer portal.
    if (m.via === "portal") head.appendChild(el("span", { className: "channel via" }, t("msg.via_portal")));
    head.appendChild(el("time", { datetime: m.created_at, title: I.full(m.created_at) }, I.when(m.created_at)));
    if (!note && m.direction === "out" && m.status) {
      head.appendChild(el("span", { className: "state state-" + m.status },
        word("state", m.status) + (m.status === "failed" && m.reason ? ": " + m.reason : "")));
    }
    if (m.subject) li.appendChild(el("div", { className: "subject" }, m.subject));
    li.appendChild(head);
    li.appendChild(el("div", { className: "text" }, m.text));
    if (m.attachments && m.attachments.length) {
      const box = el("div", { className: "attachments" }, t("msg.attachments") + " ");
      for (const a of m.attachments) {
        if (a.blob || a.url) {
          const link = el("a", { href: "#", "data-blob": a.blob || String(a.url).split("/").pop() }, fileLabel(a.name));
          link.addEventListener("click", (ev) => { ev.preventDefault(); openBlob(link.getAttribute("data-blob"), a.name); });
          box.appendChild(link);
        } else box.appendChild(el("span", null, fileLabel(a.name)));
        box.appendChild(document.createTextNode(" "));
      }
      li.appendChild(box);
    }
    // Issue 15: the articles the widget suggested before the visitor wrote this ("no, send
    // my message"): what the customer has already read.
    if (m.kb_suggestions && m.kb_suggestions.length) {
      const box = el("div", { className: "kb-suggested" }, t("msg.kb_suggested") + " ");
      for (const a of m.kb_suggestions) {
        box.appendChild(el("a", { href: "/help/" + enc(a.language) + "/" + enc(a.slug), target: "_blank",
          rel: "noopener" }, a.title || a.slug));
        box.appendChild(document.createTextNode(" "));
      }
      li.appendChild(box);
    }
    return li;
  }

  async function openBlob(blob, name) {
    try {
      const resp = await fetch("/v1/blobs/" + enc(blob), { headers: { Authorization: "Bearer " + S.token } });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const url = URL.createObjectURL(await resp.blob());
      const a = el("a", { href: url, download: name });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) { status(e.message, true); }
  }

  function scheduleConversation() {
    clearTimeout(S.convTimer);
    S.convTimer = setTimeout(() => refreshConversation(false), 80);
  }

  // --- collision: who else views or types ---------------------------------------------------
  function startViewing() {
    clearInterval(S.viewingTimer);
    if (!S.viewingApi || !S.current) return;
    const beat = () => {
      if (!S.current) return;
      const id = S.current;
      api("POST", convPath(id, "/viewing"), { typing: S.typingSentAt > 0 })
        .then((body) => { if (S.current === id && body) { S.viewers = body.viewers || []; renderViewers(); } })
        .catch(() => { /* best effort */ });
    };
    beat();
    S.viewingTimer = setInterval(beat, 10000);
  }

  function leaveViewing() {
    clearInterval(S.viewingTimer);
    if (S.viewingApi && S.current && S.token) {
      api("POST", convPath(S.current, "/viewing"), { leaving: true }).catch(() => { /* best effort */ });
    }
  }

  function renderViewers() {
    const others = (S.viewers || []).filter((v) => v.agent !== S.me && v.agent !== S.name);
    const box = $("viewers");
    box.hidden = others.length === 0;
    const typing = others.filter((v) => v.typing).map((v) => v.name || agentName(v.agent));
    const viewing = others.filter((v) => !v.typing).map((v) => v.name || agentName(v.agent));
    box.textContent = [typing.length ? t("viewers.typing", { names: I.list(typing) }) : "",
      viewing.length ? t("viewers.viewing", { names: I.list(viewing) }) : ""].filter(Boolean).join(" · ");
  }

  // --- contact panel ----------------------------------------------------------------------
  function renderContact(contact) {
    if (!contact) return;
    const attrs = Object.assign({}, contact.attributes || {});
    const focused = $("contact-form").contains(document.activeElement);
    if (!focused || S.panelFor !== contact.id) {
      $("c-name").value = contact.name || "";
      $("c-language").value = contact.language || attrs.language || "";
      $("c-segment").value = contact.segment || attrs.segment || "";
      const box = $("c-attrs");
      clear(box);
      for (const [k, v] of Object.entries(attrs)) {
        if (k === "language" || k === "segment") continue;
        const row = el("div", { className: "attr" });
        const id = "c-attr-" + k.replace(/[^a-zA-Z0-9_-]/g, "_");
        row.appendChild(el("label", { for: id }, k));
        row.appendChild(el("input", { id, type: "text", "data-attr": k, value: v == null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v) }));
        box.appendChild(row);
      }
    }
    S.panelFor = contact.id;
    const idList = $("c-identities");
    clear(idList);
    const identities = contact.identities || [];
    for (const i of identities) {
      const li = el("li", null);
      li.appendChild(el("span", { className: "identity" }, i.kind + ": " + i.address));
      li.appendChild(el("span", { className: i.verified === false ? "flag unverified" : "flag verified" },
        i.verified === false ? t("contact.unverified") : t("contact.verified")));
      if (S.splitApi && identities.length > 1) {
        const b = el("button", { type: "button", className: "link split" }, t("contact.split"));
        b.addEventListener("click", () => splitIdentity(contact.id, i));
        li.appendChild(b);
      }
      idList.appendChild(li);
    }
    for (const c of contact.claims || []) {
      const li = el("li", null);
      li.appendChild(el("span", { className: "identity" }, c.kind + ": " + c.address));
      li.appendChild(el("span", { className: "flag unverified" }, t("contact.unverified")));
      idList.appendChild(li);
    }
    const convs = $("c-conversations");
    clear(convs);
    $("c-conversations-title").hidden = !(contact.conversations && contact.conversations.length);
    for (const c of contact.conversations || []) {
      const li = el("li");
      const b = el("button", { type: "button", className: "link", "data-id": c.id, "aria-current": c.id === S.current ? "true" : false },
        [c.last_channel || c.channel, word("status", c.status), I.when(c.created_at)].filter(Boolean).join(" · "));
      b.addEventListener("click", () => openConversation(c.id));
      li.appendChild(b);
      convs.appendChild(li);
    }
    const merges = $("c-merges");
    clear(merges);
    for (const m of contact.merges || []) {
      const li = el("li", { "data-merge": m.id });
      li.appendChild(el("span", null, t("contact.merged_from", { other: m.other, time: I.when(m.at) }) +
        (m.undone_at ? " · " + t("contact.undone", { time: I.when(m.undone_at) }) : "")));
      if (!m.undone_at) {
        const b = el("button", { type: "button", className: "secondary undo" }, t("contact.undo"));
        b.addEventListener("click", () => undoMerge(contact.id, m.id));
        li.appendChild(b);
      }
      merges.appendChild(li);
    }
  }

  async function saveContact() {
    const c = S.contacts.get(S.conv && S.conv.contact_id);
    if (!c) return;
    const attributes = {};
    const old = c.attributes || {};
    const put = (k, v) => { const val = v.trim(); if (val !== String(old[k] == null ? "" : old[k])) attributes[k] = val || null; };
    put("language", $("c-language").value);
    put("segment", $("c-segment").value);
    for (const input of document.querySelectorAll("#c-attrs [data-attr]")) put(input.getAttribute("data-attr"), input.value);
    const key = $("c-new-key").value.trim();
    if (key) attributes[key] = $("c-new-value").value.trim() || null;
    const body = { attributes };
    const name = $("c-name").value.trim();
    if (name !== (c.name || "")) body.name = name || null;
    try {
      const panel = await api("PATCH", "/v1/contacts/" + enc(c.id), body);
      savedContact(panel);
      $("c-new-key").value = "";
      $("c-new-value").value = "";
      S.panelFor = null;
      renderContact(panel);
      $("conv-title").textContent = contactLabel(panel);
      status(t("done.contact_saved"));
      scheduleLists();
    } catch (e) { status(e.message, true); }
  }

  async function mergeContact() {
    const c = S.conv && S.conv.contact_id;
    const given = $("merge-other").value.trim();
    if (!c || !given) return;
    try {
      const other = await contactIdOf(given);
      const out = await api("POST", "/v1/contacts/" + enc(c) + "/merge", { other });
      savedContact(out.contact);
      S.contacts.delete(other);
      $("merge-other").value = "";
      status(t("done.merged"));
      S.earlier = null;
      await refreshConversation(true);
      scheduleLists();
    } catch (e) { status(e.message, true); }
  }

  /** A contact id as typed, or the contact owning an identity ("a@b.c", "sms:+49…"). */
  async function contactIdOf(given) {
    if (given.startsWith("ct_")) return given;
    const identity = given.includes(":") ? given : given.includes("@") ? "email:" + given : given;
    const found = await api("GET", "/v1/contacts?identity=" + enc(identity));
    const first = (found.contacts || [])[0];
    if (!first) throw new Error(t("contact.not_found", { identity }));
    return first.id;
  }

  async function undoMerge(contactId, mergeId) {
    try {
      const panel = await api("POST", "/v1/contacts/" + enc(contactId) + "/merge/" + enc(mergeId) + "/undo");
      savedContact(panel);
      status(t("done.unmerged"));
      S.earlier = null;
      await refreshConversation(true);
      scheduleLists();
    } catch (e) { status(e.message, true); }
  }

  async function splitIdentity(contactId, identity) {
    const key = identity.kind + ":" + identity.address;
    try {
      await api("POST", "/v1/contacts/" + enc(contactId) + "/identities/" + enc(key) + "/split");
      status(t("done.split", { identity: key }));
      S.contacts.clear();
      S.earlier = null;
      await refreshConversation(true);
      scheduleLists();
    } catch (e) { status(e.message, true); }
  }

  // --- actions ----------------------------------------------------------------------------
  function setReplyMode(mode) {
    const note = mode === "note" && S.notesApi;
    $("mode-note").checked = note;
    $("mode-reply").checked = !note;
    $("reply").classList.toggle("note-mode", note);
    $("reply-label").textContent = note ? t("reply.label_note") : t("reply.label");
    $("reply-text").setAttribute("placeholder", note ? t("reply.placeholder_note") : t("reply.placeholder"));
    $("send").textContent = note ? t("reply.send_note") : t("reply.send");
  }

  async function sendReply() {
    const box = $("reply-text");
    const text = box.value;
    if (!text.trim() || !S.current) return;
    const id = S.current;
    const note = $("mode-note").checked;
    const files = $("attach").files;
    box.disabled = true;
    try {
      let body = { text };
      if (files && files.length) {
        body = new FormData();
        body.append("text", text);
        if (note) body.append("private", "true");
        for (const f of files) body.append("file", f, f.name);
      }
      await api("POST", convPath(id, note && !(body instanceof FormData) ? "/notes" : "/messages"), body);
      box.value = "";
      $("attach").value = "";
      $("attach-names").textContent = "";
      if (note) status(t("done.note"));
      else stopTyping();
      await refreshConversation(false);
    } catch (e) {
      status(t("reply.failed", { error: e.message }), true);
    } finally {
      box.disabled = false;
      box.focus();
    }
  }

  function typingEndpoint(on) {
    if (!S.current) return;
    api("POST", convPath(S.current, "/typing"), { typing: on }).catch(() => { /* best effort */ });
  }

  function onReplyInput() {
    updateCanned();
    if ($("mode-note").checked) return;
    const now = Date.now();
    if (now - S.typingSentAt > 3000) {
      const first = S.typingSentAt === 0;
      S.typingSentAt = now;
      typingEndpoint(true);
      if (first && S.viewingApi) api("POST", convPath(S.current, "/viewing"), { typing: true }).catch(() => {});
    }
    clearTimeout(S.typingIdle);
    S.typingIdle = setTimeout(stopTyping, 4000);
  }

  function stopTyping() {
    clearTimeout(S.typingIdle);
    if (S.typingSentAt) {
      S.typingSentAt = 0;
      typingEndpoint(false);
      if (S.viewingApi && S.current) api("POST", convPath(S.current, "/viewing"), { typing: false }).catch(() => {});
    }
  }

  async function act(label, method, path, body) {
    try {
      await api(method, path, body);
      status(label);
      await refreshConversation(false);
      scheduleLists();
    } catch (e) {
      status(e.message, true);
    }
  }

  function snoozeUntil(choice) {
    const d = new Date();
    if (choice === "1h") d.setHours(d.getHours() + 1);
    else if (choice === "4h") d.setHours(d.getHours() + 4);
    else if (choice === "tomorrow") { d.setDate(d.getDate() + 1); d.setHours(9, 0, 0, 0); }
    else { d.setDate(d.getDate() + ((8 - d.getDay()) % 7 || 7)); d.setHours(9, 0, 0, 0); }
    return d;
  }

  async function addTag(tag) {
    tag = tag.trim();
    if (!tag || !S.current) return;
    await act(t("done.tag_added", { tag }), "POST", convPath(S.current, "/tags"), { tags: [tag] });
  }

  async function removeTag(tag) {
    if (!S.current) return;
    await act(t("done.tag_removed", { tag }), "DELETE", convPath(S.current, "/tags?tag=" + enc(tag)));
  }

  // --- canned replies: "/" in the reply box ------------------------------------------------
  async function cannedList() {
    if (S.canned) return S.canned;
    try { S.canned = (await api("GET", "/v1/canned-replies")).canned_replies || []; }
    catch (e) { S.canned = []; }
    return S.canned;
  }

  function cannedQuery() {
    const box = $("reply-text");
    const before = box.value.slice(0, box.selectionStart);
    const m = /(^|\s)\/([\w-]*)$/.exec(before);
    return m ? { word: m[2], start: before.length - m[2].length - 1 } : null;
  }

  async function updateCanned() {
    const ul = $("canned");
    const q = S.cannedApi && S.current ? cannedQuery() : null;
    if (!q) { ul.hidden = true; return; }
    const all = await cannedList();
    const w = q.word.toLowerCase();
    const matches = all.filter((c) => c.shortcut.startsWith(w) || (c.title || "").toLowerCase().includes(w)).slice(0, 8);
    clear(ul);
    ul.hidden = false;
    if (!matches.length) { ul.appendChild(el("li", { className: "none" }, t("canned.none"))); S.cannedMatches = []; return; }
    S.cannedMatches = matches;
    S.cannedIndex = Math.min(S.cannedIndex, matches.length - 1);
    matches.forEach((c, i) => {
      const li = el("li", { role: "option", id: "canned-" + i, "aria-selected": i === S.cannedIndex ? "true" : "false", "data-shortcut": c.shortcut });
      li.appendChild(el("strong", null, "/" + c.shortcut));
      li.appendChild(el("span", null, " " + (c.title || "")));
      li.addEventListener("mousedown", (ev) => { ev.preventDefault(); pickCanned(i); });
      ul.appendChild(li);
    });
    $("reply-text").setAttribute("aria-activedescendant", "canned-" + S.cannedIndex);
  }

  async function pickCanned(i) {
    const c = (S.cannedMatches || [])[i];
    const q = cannedQuery();
    $("canned").hidden = true;
    if (!c || !q || !S.current) return;
    let text;
    try {
      const out = await api("POST", "/v1/canned-replies/" + enc(c.id) + "/render?conversation_id=" + enc(S.current));
      text = out.text;
    } catch (e) { status(e.message, true); return; }
    const box = $("reply-text");
    const end = q.start + 1 + q.word.length;
    box.value = box.value.slice(0, q.start) + text + box.value.slice(end);
    const caret = q.start + text.length;
    box.setSelectionRange(caret, caret);
    box.focus();
  }

  function cannedKey(ev) {
    const ul = $("canned");
    if (ul.hidden || !S.cannedMatches || !S.cannedMatches.length) {
      if (ev.key === "Escape" && !ul.hidden) { ul.hidden = true; return true; }
      return false;
    }
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      const n = S.cannedMatches.length;
      S.cannedIndex = (S.cannedIndex + (ev.key === "ArrowDown" ? 1 : n - 1)) % n;
      updateCanned();
      return true;
    }
    if (ev.key === "Enter" || ev.key === "Tab") { pickCanned(S.cannedIndex); return true; }
    if (ev.key === "Escape") { ul.hidden = true; return true; }
    return false;
  }

  // --- notifications and the title badge ---------------------------------------------------
  function notifyWanted() {
    try { return localStorage.getItem(NOTIFY_KEY) === "on"; } catch (e) { return false; }
  }

  function renderNotifyButton() {
    const on = notifyWanted() && "Notification" in window && Notification.permission === "granted";
    $("notify").textContent = on ? t("notify.on") : t("notify.off");
    $("notify").setAttribute("aria-pressed", on ? "true" : "false");
  }

  async function toggleNotify() {
    if (!("Notification" in window)) { status(t("notify.unsupported"), true); return; }
    if (notifyWanted()) {
      try { localStorage.setItem(NOTIFY_KEY, "off"); } catch (e) { /* ignore */ }
    } else {
      let perm = Notification.permission;
      if (perm !== "granted") perm = await Notification.requestPermission();
      if (perm !== "granted") { status(t("notify.denied"), true); renderNotifyButton(); return; }
      try { localStorage.setItem(NOTIFY_KEY, "on"); } catch (e) { /* ignore */ }
    }
    renderNotifyButton();
  }

  async function notifyAssigned(cid) {
    if (!notifyWanted()) return;
    let who = "";
    try {
      const conv = await api("GET", convPath(cid));
      if (!S.contacts.has(conv.contact_id)) await loadContacts([conv.contact_id]);
      who = conv.contact_name || contactLabel(S.contacts.get(conv.contact_id));
    } catch (e) { /* the title says enough */ }
    notify(t("notify.assigned"), who, cid);
  }

  function notify(title, body, cid) {
    if (!notifyWanted() || !("Notification" in window) || Notification.permission !== "granted") return;
    if (!document.hidden && cid === S.current) return;
    try {
      const n = new Notification(title, { body: body || "", tag: cid || undefined });
      n.onclick = () => { window.focus(); if (cid) openConversation(cid); n.close(); };
    } catch (e) { /* some browsers only allow it from a service worker */ }
  }

  // --- the event stream -------------------------------------------------------------------
  function connectEvents() {
    if (S.stopped || S.events) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/v1/events?access_token=" + enc(S.token));
    S.events = ws;
    $("live").textContent = t("live.connecting");
    ws.onopen = () => {
      S.eventsAttempt = 0;
      $("live").textContent = t("live.on");
      $("live").classList.add("on");
      refreshLists();
      if (S.current) refreshConversation(false);
    };
    ws.onmessage = (ev) => {
      let e;
      try { e = JSON.parse(ev.data); } catch (err) { return; }
      onEvent(e);
    };
    ws.onclose = () => {
      if (S.events !== ws) return;
      S.events = null;
      $("live").textContent = t("live.reconnecting");
      $("live").classList.remove("on");
      if (S.stopped) return;
      const delay = Math.min(15000, 500 * 2 ** S.eventsAttempt++);
      setTimeout(connectEvents, delay / 2 + Math.random() * delay / 2);
    };
  }

  function conversationOf(data) {
    if (!data) return null;
    return data.conversation_id || (data.conversation && data.conversation.id) ||
      (data.message && data.message.conversation_id) || null;
  }

  function onEvent(e) {
    const data = e.data || {};
    const cid = conversationOf(data);
    if (e.type === "conversation.typing") {
      if (cid === S.current && data.from === "contact") {
        clearTimeout(S.customerTyping);
        $("typing").hidden = !data.typing;
        if (data.typing) S.customerTyping = setTimeout(() => { $("typing").hidden = true; }, 8000);
      }
      return;
    }
    if (e.type === "conversation.viewing") {
      if (cid === S.current) { S.viewers = data.viewers || []; renderViewers(); }
      return;
    }
    if (e.type === "agent.presence" && data.agent === S.me) $("presence").value = data.status;
    if (e.type === "conversation.read" && cid && data.reader === S.reader) { S.unread.set(cid, 0); updateTitle(); }
    if (e.type === "conversation.assigned" && cid) {
      if (data.reasons) S.routingLive.set(cid, { reasons: data.reasons, localized: data.reasons_localized });
      if (S.me && data.agent === S.me && data.by !== S.name) notifyAssigned(cid);
    }
    if (e.type === "agent.mentioned" && S.me && data.agent === S.me) {
      notify(t("notify.mention", { name: agentName(data.by) }), "", cid);
    }
    if (e.type === "message.received" && cid) {
      if (cid === S.current && !document.hidden) $("typing").hidden = true;
      else {
        S.unread.set(cid, unreadOf(cid) + 1);
        updateTitle();
      }
      if (S.mineIds.has(cid) || (supervising() && !S.me)) {
        const c = S.contacts.get(data.contact_id);
        notify(t("notify.message", { name: contactLabel(c) }), data.message ? data.message.text : "", cid);
      }
    }
    if (e.type.startsWith("contact.") && S.conv) {
      const touched = [data.contact_id, data.merged_contact_id, data.source_contact_id].filter(Boolean);
      if (touched.includes(S.conv.contact_id)) { S.contacts.delete(S.conv.contact_id); S.earlier = null; scheduleConversation(); }
    }
    if (cid && cid === S.current) scheduleConversation();
    if (e.type.startsWith("conversation.") || e.type.startsWith("offer.") || e.type.startsWith("message.") ||
        e.type.startsWith("agent.") || e.type.startsWith("contact.")) {
      scheduleLists();
    }
  }

  // --- keyboard ---------------------------------------------------------------------------
  const KEYS = [["j", "key.j"], ["k", "key.k"], ["r", "key.r"], ["n", "key.n"], ["e", "key.e"],
    ["/", "key.slash"], ["/ …", "key.canned"], ["Esc", "key.esc"], ["?", "key.help"]];

  function renderHelp() {
    const dl = $("help-keys");
    clear(dl);
    for (const [key, what] of KEYS) {
      const dt = el("dt");
      dt.appendChild(el("kbd", null, key));
      dl.appendChild(dt);
      dl.appendChild(el("dd", null, t(what)));
    }
  }

  function showHelp(on) {
    $("help").hidden = !on;
    if (on) $("help-close").focus();
  }

  function visibleItems() {
    return [...document.querySelectorAll(".lists button.conv-item")].filter((b) => b.offsetParent !== null);
  }

  function step(delta) {
    const items = visibleItems();
    if (!items.length) return;
    let i = items.findIndex((b) => b.getAttribute("data-id") === S.current);
    i = i < 0 ? (delta > 0 ? 0 : items.length - 1) : Math.max(0, Math.min(items.length - 1, i + delta));
    const id = items[i].getAttribute("data-id");
    items[i].scrollIntoView({ block: "nearest" });
    openConversation(id).then(() => { const b = visibleItems().find((x) => x.getAttribute("data-id") === id); if (b) b.focus(); });
  }

  function onKey(ev) {
    if (S.stopped || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "Escape") {
      if (!$("help").hidden) { showHelp(false); ev.preventDefault(); return; }
      if (!$("new-conv").hidden) { showNewConversation(false); ev.preventDefault(); return; }
      const pane = $("app").getAttribute("data-pane");
      if (pane === "contact") $("app").setAttribute("data-pane", "conv");
      else if (pane === "conv") $("app").setAttribute("data-pane", "list");
      return;
    }
    const tag = (ev.target && ev.target.tagName) || "";
    if (["INPUT", "TEXTAREA", "SELECT"].includes(tag) || (ev.target && ev.target.isContentEditable)) return;
    if (!$("help").hidden || !$("new-conv").hidden) return;
    const go = {
      j: () => step(1), k: () => step(-1),
      r: () => { if (S.current) { setReplyMode("reply"); $("reply-text").focus(); } },
      n: () => { if (S.current && S.notesApi) { setReplyMode("note"); $("reply-text").focus(); } },
      e: () => { if (S.current && !$("resolve").hidden && !$("resolve").disabled) $("resolve").click(); },
      "/": () => { if (!$("search-form").hidden) $("search").focus(); },
      "?": () => showHelp(true),
    }[ev.key];
    if (go) { ev.preventDefault(); go(); }
  }

  // --- wiring -----------------------------------------------------------------------------
  function init() {
    I.apply();
    $("lang").value = I.lang();
    $("lang").addEventListener("change", (ev) => {
      I.setLang(ev.target.value);
      if (S.role) renderChrome(); else I.apply();
      if (S.role) refreshLists();
    });
    $("signin").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const token = $("token").value.trim();
      if (token) await signIn(token);
    });
    $("signout").addEventListener("click", () => signOut(""));
    $("presence").addEventListener("change", async (ev) => {
      const value = ev.target.value;
      try {
        await api("PUT", "/v1/agents/" + enc(S.me) + "/presence", { status: value });
        status(t("done.presence", { p: t("presence." + value) }));
        scheduleLists();
      } catch (e) { status(t("error.presence", { error: e.message }), true); }
    });
    $("notify").addEventListener("click", toggleNotify);
    $("help-btn").addEventListener("click", () => showHelp(true));
    $("new-conv-btn").addEventListener("click", () => showNewConversation(true));
    $("nc-cancel").addEventListener("click", () => showNewConversation(false));
    $("new-conv-form").addEventListener("submit", startConversation);
    $("help-close").addEventListener("click", () => showHelp(false));
    $("help").addEventListener("click", (ev) => { if (ev.target === $("help")) showHelp(false); });
    $("view").addEventListener("change", (ev) => {
      S.view = ev.target.value;
      if (S.searching) closeSearch();
      showView();
      refreshLists();
    });
    for (const node of document.querySelectorAll("[data-filter]")) {
      node.addEventListener("change", () => {
        if (S.view === "inbox") { S.view = supervising() ? "all" : "mine"; $("view").value = S.view; showView(); }
        refreshLists();
      });
    }
    $("f-clear").addEventListener("click", () => {
      for (const node of document.querySelectorAll("[data-filter]")) node.value = "";
      refreshLists();
    });
    $("more").addEventListener("click", loadMore);
    $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); runSearch($("search").value); });
    $("search").addEventListener("search", () => { if (!$("search").value) closeSearch(); });
    $("search-close").addEventListener("click", closeSearch);
    $("back").addEventListener("click", () => $("app").setAttribute("data-pane", "list"));
    $("contact-btn").addEventListener("click", () => $("app").setAttribute("data-pane", "contact"));
    $("contact-back").addEventListener("click", () => $("app").setAttribute("data-pane", "conv"));
    $("reply").addEventListener("submit", (ev) => { ev.preventDefault(); sendReply(); });
    $("reply-text").addEventListener("keydown", (ev) => {
      if (cannedKey(ev)) { ev.preventDefault(); return; }
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); sendReply(); }
    });
    $("reply-text").addEventListener("input", onReplyInput);
    $("reply-text").addEventListener("blur", () => setTimeout(() => {
      if (document.activeElement !== $("reply-text")) $("canned").hidden = true;
    }, 150));
    for (const r of document.querySelectorAll('input[name="mode"]')) {
      r.addEventListener("change", () => setReplyMode(r.value));
    }
    $("attach").addEventListener("change", () => {
      $("attach-names").textContent = [...$("attach").files].map((f) => fileLabel(f.name)).join(", ");
    });
    $("resolve").addEventListener("click", () => act(t("done.resolved"), "POST", convPath(S.current, "/resolve")));
    $("reopen").addEventListener("click", () => act(t("done.reopened"), "POST", convPath(S.current, "/reopen")));
    $("take").addEventListener("click", () =>
      act(t("done.assigned_me"), "POST", convPath(S.current, "/assign"), { agent: S.me }));
    $("assign").addEventListener("click", () => {
      const agent = $("assign-agent").value;
      act(t("done.assigned", { name: agentName(agent) }), "POST", convPath(S.current, "/assign"), { agent });
    });
    $("transfer").addEventListener("click", () => {
      const target = $("transfer-queue").value;
      if (target.startsWith("agent:")) {
        const agent = target.slice(6);
        act(t("done.assigned", { name: agentName(agent) }), "POST", convPath(S.current, "/transfer"), { agent });
      } else {
        act(t("done.transferred", { queue: target }), "POST", convPath(S.current, "/transfer"), { queue: target });
      }
    });
    $("wake").addEventListener("click", () => act(t("done.woken"), "DELETE", convPath(S.current, "/snooze")));
    $("portal-link").addEventListener("click", () => act(t("done.portal_link"), "POST", convPath(S.current, "/portal-link")));
    $("snooze").addEventListener("click", () => {
      const until = snoozeUntil($("snooze-for").value);
      act(t("done.snoozed", { time: I.when(until.toISOString()) }), "POST", convPath(S.current, "/snooze"),
        { until: until.toISOString() });
    });
    $("priority").addEventListener("change", (ev) => {
      const p = ev.target.value;
      const method = S.priorityPath || "POST";
      const path = method === "PATCH" ? convPath(S.current) : convPath(S.current, "/priority");
      act(t("done.priority", { p: t("priority." + p) }), method, path, { priority: p });
    });
    $("tag-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = $("tag-input").value;
      $("tag-input").value = "";
      addTag(v);
    });
    $("contact-form").addEventListener("submit", (ev) => { ev.preventDefault(); saveContact(); });
    $("merge-form").addEventListener("submit", (ev) => { ev.preventDefault(); mergeContact(); });
    document.addEventListener("keydown", onKey);
    document.addEventListener("visibilitychange", () => { if (!document.hidden && S.current) refreshConversation(false); });
    window.addEventListener("pagehide", leaveViewing);
    setInterval(tickOffers, 1000);
    setInterval(() => {
      for (const node of document.querySelectorAll(".conv-item time")) node.textContent = I.relative(node.getAttribute("datetime"));
    }, 30000);
    let saved = null;
    try { saved = sessionStorage.getItem(TOKEN_KEY); } catch (e) { saved = null; }
    if (saved) {
      signIn(saved).then((ok) => { if (!ok) { try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ } } });
    } else {
      $("token").focus();
    }
  }

  window.__switchboardConsole = { state: S };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
