/*
 * Switchboard agent console: one page, no framework, no build step. It uses only the
 * public HTTP API (bearer token) and the event stream /v1/events, so anything it does a
 * helpdesk integration can do too. All text goes into the page with textContent.
 */
"use strict";

(function () {
  const TOKEN_KEY = "switchboard-console-token";
  const $ = (id) => document.getElementById(id);

  const S = {
    token: null,
    me: null,          // agent id
    agents: [],
    queues: [],
    current: null,     // open conversation id
    contacts: new Map(),   // contact id → contact
    unread: new Set(),     // conversation ids with news since last opened
    events: null,
    eventsAttempt: 0,
    listTimer: null,
    convTimer: null,
    typingSentAt: 0,
    typingIdle: null,
    customerTyping: null,
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

  function status(text, isError) {
    const box = $("status");
    box.textContent = text || "";
    box.classList.toggle("error", !!isError);
    if (text && !isError) setTimeout(() => { if (box.textContent === text) box.textContent = ""; }, 4000);
  }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  }

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(method, path, body, token) {
    const headers = { Authorization: "Bearer " + (token || S.token) };
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try { resp = await fetch(path, init); }
    catch (e) { throw new ApiError(0, "network", "The gateway cannot be reached."); }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      if (resp.status === 401 && S.me) { signOut("Your token is no longer accepted; sign in again."); }
      throw new ApiError(resp.status, err.code || "http_error", err.message || ("HTTP " + resp.status));
    }
    return data;
  }

  // --- sign in ----------------------------------------------------------------------------
  async function whoAmI(token, agents) {
    // Prefer an explicit endpoint when the gateway has one.
    try {
      const me = await api("GET", "/v1/me", undefined, token);
      if (me && me.agent) return me.agent;
      if (me && me.role && me.role !== "agent") return null;
    } catch (e) {
      if (e.status !== 404 && e.status !== 405) throw e;
    }
    // Otherwise ask the API a question that changes nothing: assigning a conversation that
    // does not exist answers 404 for the token's own agent and 403 for any other agent.
    const hits = [];
    for (const a of agents) {
      try {
        await api("POST", "/v1/conversations/cv_console_whoami/assign", { agent: a.id }, token);
      } catch (e) {
        if (e.status === 404) hits.push(a.id);
        else if (e.status !== 403) throw e;
      }
    }
    return hits.length === 1 ? hits[0] : null;
  }

  async function signIn(token) {
    const err = $("signin-error");
    err.hidden = true;
    let agents;
    try {
      agents = (await api("GET", "/v1/agents", undefined, token)).agents;
    } catch (e) {
      err.textContent = e.status === 401 ? "That token is not valid." : e.message;
      err.hidden = false;
      return false;
    }
    const me = await whoAmI(token, agents).catch((e) => { err.textContent = e.message; return undefined; });
    if (!me) {
      if (me === null) err.textContent = "This console needs an agent token (one bound to an agent).";
      err.hidden = false;
      return false;
    }
    S.token = token;
    S.me = me;
    S.agents = agents;
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* private mode */ }
    startApp();
    return true;
  }

  function signOut(message) {
    S.stopped = true;
    stopHeartbeat();
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
    if (S.events) { try { S.events.close(); } catch (e) { /* ignore */ } S.events = null; }
    S.token = null; S.me = null; S.current = null;
    $("app").hidden = true;
    $("session").hidden = true;
    $("signin-view").hidden = false;
    $("token").value = "";
    if (message) { $("signin-error").textContent = message; $("signin-error").hidden = false; }
    $("token").focus();
  }

  function startApp() {
    S.stopped = false;
    $("signin-view").hidden = true;
    $("app").hidden = false;
    $("session").hidden = false;
    const agent = S.agents.find((a) => a.id === S.me);
    $("me").textContent = (agent && agent.name ? agent.name : S.me) + " (" + S.me + ")";
    $("presence").value = agent ? agent.presence : "offline";
    const queues = new Set();
    for (const a of S.agents) for (const q of a.queues || []) queues.add(q);
    S.queues = [...queues].sort();
    const sel = $("transfer-queue");
    clear(sel);
    for (const q of S.queues) sel.appendChild(el("option", { value: q }, q));
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

  // --- lists ------------------------------------------------------------------------------
  function myQueues() {
    const agent = S.agents.find((a) => a.id === S.me);
    return agent ? agent.queues || [] : [];
  }

  async function refreshLists() {
    if (S.stopped) return;
    try {
      const [agents, offers, mine, ...waiting] = await Promise.all([
        api("GET", "/v1/agents"),
        api("GET", "/v1/offers"),
        api("GET", "/v1/conversations?assignee=" + encodeURIComponent(S.me) + "&limit=200"),
        ...myQueues().map((q) => api("GET", "/v1/conversations?status=open&queue=" + encodeURIComponent(q) + "&limit=200")),
      ]);
      S.agents = agents.agents;
      const meNow = S.agents.find((a) => a.id === S.me);
      if (meNow && document.activeElement !== $("presence")) $("presence").value = meNow.presence;
      const active = mine.conversations.filter((c) => ["assigned", "pending", "open"].includes(c.status));
      const seen = new Set();
      const open = [];
      for (const page of waiting) {
        for (const c of page.conversations) {
          if (!seen.has(c.id)) { seen.add(c.id); open.push(c); }
        }
      }
      open.sort((a, b) => (a.created_at < b.created_at ? -1 : 1));  // oldest first: who waits longest
      renderOffers(offers.offers, open);
      renderList($("mine"), $("mine-empty"), $("mine-count"), active);
      renderList($("waiting"), $("waiting-empty"), $("waiting-count"), open);
      await loadContacts([...active, ...open].map((c) => c.contact_id));
    } catch (e) {
      if (e.status !== 401) status("Could not load conversations: " + e.message, true);
    }
  }

  async function loadContacts(ids) {
    const missing = [...new Set(ids)].filter((id) => !S.contacts.has(id));
    await Promise.all(missing.map(async (id) => {
      try { S.contacts.set(id, await api("GET", "/v1/contacts/" + encodeURIComponent(id))); }
      catch (e) { /* shown by id */ }
    }));
    for (const node of document.querySelectorAll("[data-contact]")) {
      const c = S.contacts.get(node.getAttribute("data-contact"));
      if (c) node.textContent = contactLabel(c);
    }
  }

  function contactLabel(c) {
    if (!c) return "Customer";
    if (c.name) return c.name;
    const email = (c.identities || []).find((i) => i.kind === "email");
    if (email) return email.address;
    return "Customer " + c.id.slice(-6);
  }

  function renderList(ul, empty, count, convs) {
    clear(ul);
    empty.hidden = convs.length > 0;
    count.textContent = convs.length ? "(" + convs.length + ")" : "";
    for (const c of convs) {
      const li = el("li");
      const btn = el("button", {
        type: "button", className: "conv-item", "data-id": c.id,
        "aria-current": c.id === S.current ? "true" : false,
      });
      const who = el("span", { className: "who", "data-contact": c.contact_id },
        contactLabel(S.contacts.get(c.contact_id)));
      const info = el("span", { className: "info" },
        [c.last_channel, c.queue, c.status, c.priority !== "normal" ? c.priority : ""].filter(Boolean).join(" · "));
      const time = el("span", { className: "time" }, when(c.updated_at));
      btn.appendChild(who);
      if (S.unread.has(c.id)) {
        btn.appendChild(el("span", { className: "dot", role: "img", "aria-label": "new messages" }));
      }
      btn.appendChild(info);
      btn.appendChild(time);
      btn.addEventListener("click", () => openConversation(c.id));
      li.appendChild(btn);
      ul.appendChild(li);
    }
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
        c ? contactLabel(S.contacts.get(c.contact_id)) : "Customer"));
      li.appendChild(el("span", { className: "info" }, [o.queue, c ? c.last_channel : ""].filter(Boolean).join(" · ")));
      const left = el("span", { className: "expires", "data-expires": o.expires_at });
      li.appendChild(left);
      const accept = el("button", { type: "button", className: "primary accept" }, "Accept");
      const reject = el("button", { type: "button", className: "secondary reject" }, "Reject");
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
      node.textContent = left > 0 ? "expires in " + left + " s" : "expired";
    }
  }

  async function answerOffer(id, what) {
    try {
      await api("POST", "/v1/conversations/" + encodeURIComponent(id) + "/offer/" + what);
      status(what === "accept" ? "Offer accepted: the conversation is yours." : "Offer rejected.");
      if (what === "accept") { scheduleLists(); await openConversation(id); return; }
    } catch (e) {
      status(e.status === 409 ? "Too late: the offer has expired or was withdrawn." : e.message, true);
    }
    scheduleLists();
  }

  function scheduleLists() {
    clearTimeout(S.listTimer);
    S.listTimer = setTimeout(refreshLists, 150);
  }

  // --- one conversation -------------------------------------------------------------------
  async function openConversation(id) {
    S.current = id;
    S.unread.delete(id);
    for (const b of document.querySelectorAll(".conv-item")) {
      if (b.getAttribute("data-id") === id) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
    $("placeholder").hidden = true;
    $("conv").hidden = false;
    $("typing").hidden = true;
    await refreshConversation(true);
    scheduleLists();
    $("reply-text").focus();
  }

  async function refreshConversation(full) {
    const id = S.current;
    if (!id) return;
    let conv;
    try { conv = await api("GET", "/v1/conversations/" + encodeURIComponent(id)); }
    catch (e) { status("Could not load the conversation: " + e.message, true); return; }
    if (S.current !== id) return;
    let contact = S.contacts.get(conv.contact_id);
    if (!contact || full) {
      try { contact = await api("GET", "/v1/contacts/" + encodeURIComponent(conv.contact_id)); S.contacts.set(contact.id, contact); }
      catch (e) { contact = null; }
    }
    // The customer's whole history: earlier conversations (any channel), then this one.
    let earlier = S.earlier && S.earlier.for === id && !full ? S.earlier.items : null;
    if (!earlier) {
      earlier = [];
      try {
        const list = await api("GET", "/v1/conversations?contact=" + encodeURIComponent(conv.contact_id) + "&limit=10");
        const others = list.conversations.filter((c) => c.id !== id).reverse();
        for (const c of others) {
          try { earlier.push(await api("GET", "/v1/conversations/" + encodeURIComponent(c.id))); }
          catch (e) { /* skip */ }
        }
      } catch (e) { /* history is a bonus */ }
      S.earlier = { for: id, items: earlier };
    }
    if (S.current !== id) return;
    renderConversation(conv, contact, earlier);
  }

  function renderConversation(conv, contact, earlier) {
    $("conv-title").textContent = contactLabel(contact);
    const ids = contact ? (contact.identities || [])
      .map((i) => i.kind + ": " + i.address + (i.verified === false ? " (unverified)" : ""))
      .concat((contact.claims || []).map((c) => "claims to be " + c.address + " (unverified)"))
      .join(", ") : "";
    const esc = conv.escalation;
    $("conv-meta").textContent = [
      conv.status, "queue " + conv.queue, conv.assignee ? "assigned to " + conv.assignee : "unassigned",
      conv.offer ? "offered to " + conv.offer.agent : "",
      esc && esc.of ? "escalation step " + esc.step + " of " + esc.of : "",
      "via " + conv.last_channel, ids,
    ].filter(Boolean).join(" · ");
    const mine = conv.assignee === S.me;
    const active = ["open", "assigned", "pending"].includes(conv.status);
    $("take").hidden = !(active && !conv.assignee);
    $("resolve").hidden = !active;
    $("resolve").disabled = !(mine || !conv.assignee);
    $("transfer").disabled = !active || !(mine || !conv.assignee);
    $("transfer-queue").disabled = $("transfer").disabled;
    if (!S.queues.includes(conv.queue)) {
      S.queues.push(conv.queue);
      $("transfer-queue").appendChild(el("option", { value: conv.queue }, conv.queue));
    }
    if (document.activeElement !== $("transfer-queue")) $("transfer-queue").value = conv.queue;

    const log = $("messages");
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    clear(log);
    const name = contactLabel(contact);
    for (const past of earlier) {
      log.appendChild(el("li", { className: "divider" },
        "Earlier conversation · " + past.channel + " · " + past.status + " · " + when(past.created_at)));
      for (const m of past.messages) log.appendChild(renderMessage(m, name));
    }
    if (earlier.length) log.appendChild(el("li", { className: "divider" }, "This conversation · " + when(conv.created_at)));
    for (const m of conv.messages) log.appendChild(renderMessage(m, name));
    if (stick || !S.rendered || S.rendered !== conv.id) log.scrollTop = log.scrollHeight;
    S.rendered = conv.id;
  }

  function renderMessage(m, customer) {
    const li = el("li", { className: "msg " + (m.direction === "in" ? "in" : "out"), "data-id": m.id });
    const head = el("div", { className: "head" });
    const who = m.direction === "in" ? customer
      : (m.sender && m.sender.type === "agent" ? m.sender.id : (m.sender && m.sender.type) || "system");
    head.appendChild(el("strong", null, who));
    head.appendChild(el("span", { className: "channel" }, m.channel));
    head.appendChild(el("time", { datetime: m.created_at }, when(m.created_at)));
    if (m.direction === "out" && m.status) {
      head.appendChild(el("span", { className: "state state-" + m.status },
        m.status + (m.status === "failed" && m.reason ? ": " + m.reason : "")));
    }
    if (m.subject) li.appendChild(el("div", { className: "subject" }, m.subject));
    li.appendChild(head);
    li.appendChild(el("div", { className: "text" }, m.text));
    if (m.attachments && m.attachments.length) {
      li.appendChild(el("div", { className: "attachments" },
        "Attachments: " + m.attachments.map((a) => a.name).join(", ")));
    }
    return li;
  }

  function scheduleConversation() {
    clearTimeout(S.convTimer);
    S.convTimer = setTimeout(() => refreshConversation(false), 80);
  }

  // --- actions ----------------------------------------------------------------------------
  async function sendReply() {
    const box = $("reply-text");
    const text = box.value;
    if (!text.trim() || !S.current) return;
    const id = S.current;
    box.disabled = true;
    try {
      await api("POST", "/v1/conversations/" + encodeURIComponent(id) + "/messages", { text });
      box.value = "";
      stopTyping();
      await refreshConversation(false);
    } catch (e) {
      status("The reply was not sent: " + e.message, true);
    } finally {
      box.disabled = false;
      box.focus();
    }
  }

  function typingEndpoint(on) {
    if (!S.current) return;
    api("POST", "/v1/conversations/" + encodeURIComponent(S.current) + "/typing", { typing: on })
      .catch(() => { /* best effort */ });
  }

  function onReplyInput() {
    const now = Date.now();
    if (now - S.typingSentAt > 3000) { S.typingSentAt = now; typingEndpoint(true); }
    clearTimeout(S.typingIdle);
    S.typingIdle = setTimeout(stopTyping, 4000);
  }

  function stopTyping() {
    clearTimeout(S.typingIdle);
    if (S.typingSentAt) { S.typingSentAt = 0; typingEndpoint(false); }
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

  // --- the event stream -------------------------------------------------------------------
  function connectEvents() {
    if (S.stopped || S.events) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/v1/events?access_token=" + encodeURIComponent(S.token));
    S.events = ws;
    $("live").textContent = "connecting…";
    ws.onopen = () => {
      S.eventsAttempt = 0;
      $("live").textContent = "live";
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
      $("live").textContent = "reconnecting…";
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
    if (e.type === "agent.presence" && data.agent === S.me) {
      $("presence").value = data.status;
    }
    if (e.type === "message.received") {
      if (cid === S.current) $("typing").hidden = true;
      else if (cid) S.unread.add(cid);
    }
    if (cid && cid === S.current) scheduleConversation();
    if (e.type.startsWith("conversation.") || e.type.startsWith("offer.") || e.type === "message.received" ||
        e.type.startsWith("agent.") || e.type === "contact.created") {
      scheduleLists();
    }
  }

  // --- wiring -----------------------------------------------------------------------------
  function init() {
    $("signin").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("token").value.trim();
      if (token) signIn(token);
    });
    $("signout").addEventListener("click", () => signOut(""));
    $("presence").addEventListener("change", async (ev) => {
      const value = ev.target.value;
      try {
        await api("PUT", "/v1/agents/" + encodeURIComponent(S.me) + "/presence", { status: value });
        status("Presence: " + value);
        scheduleLists();
      } catch (e) { status("Presence not changed: " + e.message, true); }
    });
    $("reply").addEventListener("submit", (ev) => { ev.preventDefault(); sendReply(); });
    $("reply-text").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); sendReply(); }
    });
    $("reply-text").addEventListener("input", onReplyInput);
    $("resolve").addEventListener("click", () =>
      act("Resolved.", "POST", "/v1/conversations/" + encodeURIComponent(S.current) + "/resolve"));
    $("take").addEventListener("click", () =>
      act("Assigned to you.", "POST", "/v1/conversations/" + encodeURIComponent(S.current) + "/assign", { agent: S.me }));
    $("transfer").addEventListener("click", () => {
      const queue = $("transfer-queue").value;
      act("Transferred to " + queue + ".", "POST",
        "/v1/conversations/" + encodeURIComponent(S.current) + "/transfer", { queue });
    });
    setInterval(tickOffers, 1000);
    let saved = null;
    try { saved = sessionStorage.getItem(TOKEN_KEY); } catch (e) { saved = null; }
    if (saved) {
      signIn(saved).then((ok) => { if (!ok) { try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ } } });
    } else {
      $("token").focus();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
