/*
 * Switchboard web chat widget. Embed with one tag, no build step:
 *
 *   <script src="https://gateway.example.com/webchat/CHANNEL/widget.js" async></script>
 *
 * It adds a chat bubble (bottom-right) inside a Shadow DOM, so the host page's styles
 * and the widget's never touch. It talks to the gateway over a WebSocket; the visitor's
 * signed token lives in localStorage, so a reload or a second tab resumes the same
 * conversation. Every message carries a client id: after a network drop the unacknowledged
 * ones are sent again and the gateway stores each exactly once. All text is inserted with
 * textContent, never as HTML.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) {
    var all = document.getElementsByTagName("script");
    for (var i = all.length - 1; i >= 0; i--) {
      if (/\/webchat\/[^/]+\/widget\.js(\?|$)/.test(all[i].src)) { script = all[i]; break; }
    }
  }
  if (!script) { return; }
  var src = new URL(script.src, location.href);
  var match = src.pathname.match(/\/webchat\/([^/]+)\/widget\.js$/);
  if (!match) { return; }
  var channel = decodeURIComponent(match[1]);
  var wsUrl = (src.protocol === "https:" ? "wss:" : "ws:") + "//" + src.host +
    "/webchat/" + encodeURIComponent(channel) + "/ws";
  var KEY = "switchboard-webchat:" + src.origin + ":" + channel;
  var globalName = "__switchboardWebchat_" + channel;
  if (window[globalName]) { return; }  // included twice: keep the first
  window[globalName] = true;

  // --- the widget's own words, in the visitor's language -----------------------------------
  // `data-lang="de"` on the script tag wins; else the browser's language; English otherwise.
  // Texts the gateway sends (title, greeting, wait notes, survey and suggestion texts) are
  // already in the visitor's language.
  var UI = {
    en: {
      offline_banner: "No agent is online right now; leave a message and we'll reply here.",
      title: "Chat", open_chat: "Open chat", open_chat_unread: "Open chat ({n} unread)",
      close_chat: "Close chat", connecting: "Connecting\u2026", reconnecting: "Reconnecting\u2026",
      connection_lost: "Connection lost. Reconnecting\u2026", offline_state: "offline",
      offline_conn: "You are offline. Messages will be sent when you reconnect.",
      messages: "Messages", agent_typing: "Agent is typing\u2026", before_start: "Before we start",
      prechat_intro: "Tell us who you are, so we can follow up (optional).", name: "Name",
      email: "Email", skip: "Skip", start_chat: "Start chat", confirm_address: "Confirm the address",
      code: "Confirmation code", confirm: "Confirm", new_code: "Send a new code",
      write: "Write a message", write_placeholder: "Write a message\u2026", your_message: "Your message",
      send: "Send", sending: "Sending\u2026", not_sent: "Not sent", sent: "Sent", retry: "Retry",
      support: "Support", anything_to_add: "Anything to add?", thank_you: "Thank you!",
      code_sent: "We emailed a code to {email}. Type it here to confirm the address is yours.",
      code_pending: "Type the code we emailed to {email} to confirm the address is yours.",
      code_wrong_one: "That code is not right (1 try left).",
      code_wrong: "That code is not right ({n} tries left).",
      not_confirmed: "We could not confirm {email}.",
      locked: "Too many wrong codes. Try again in {n} min.",
      code_expired: "The code has expired. Ask for a new one.",
      code_rate: "We sent several codes already. Try again in {n} min.",
      confirmed: "Thank you: {email} is confirmed.", type_code: "Type the 6-digit code from the email.",
      check_form: "Please check the form.", went_wrong: "Something went wrong.",
      bad_email: "That does not look like an email address.",
      offline_retry: "You are offline; try again in a moment.", sending_code: "Sending a new code\u2026",
      articles: "These articles may answer your question:", answered: "Did this answer your question?",
      yes: "Yes, thanks", no: "No, send my message", glad: "Glad we could help!",
      my_requests: "See my requests", dismiss_invitation: "Dismiss invitation"
    },
    de: {
      offline_banner: "Gerade ist niemand online. Hinterlassen Sie eine Nachricht, wir antworten hier.",
      title: "Chat", open_chat: "Chat \u00f6ffnen", open_chat_unread: "Chat \u00f6ffnen ({n} ungelesen)",
      close_chat: "Chat schlie\u00dfen", connecting: "Verbinde\u2026", reconnecting: "Verbinde neu\u2026",
      connection_lost: "Verbindung verloren. Verbinde neu\u2026", offline_state: "offline",
      offline_conn: "Sie sind offline. Nachrichten werden gesendet, sobald die Verbindung steht.",
      messages: "Nachrichten", agent_typing: "Ein Mitarbeiter schreibt\u2026", before_start: "Bevor es losgeht",
      prechat_intro: "Sagen Sie uns, wer Sie sind, damit wir nachfassen k\u00f6nnen (optional).",
      name: "Name", email: "E-Mail", skip: "\u00dcberspringen", start_chat: "Chat starten",
      confirm_address: "Adresse best\u00e4tigen", code: "Best\u00e4tigungscode", confirm: "Best\u00e4tigen",
      new_code: "Neuen Code senden", write: "Nachricht schreiben",
      write_placeholder: "Nachricht schreiben\u2026", your_message: "Ihre Nachricht", send: "Senden",
      sending: "Wird gesendet\u2026", not_sent: "Nicht gesendet", sent: "Gesendet", retry: "Erneut senden",
      support: "Support", anything_to_add: "M\u00f6chten Sie noch etwas erg\u00e4nzen?", thank_you: "Danke!",
      code_sent: "Wir haben einen Code an {email} geschickt. Geben Sie ihn hier ein, um zu best\u00e4tigen, dass die Adresse Ihnen geh\u00f6rt.",
      code_pending: "Geben Sie den Code ein, den wir an {email} geschickt haben, um die Adresse zu best\u00e4tigen.",
      code_wrong_one: "Der Code stimmt nicht (noch 1 Versuch).",
      code_wrong: "Der Code stimmt nicht (noch {n} Versuche).",
      not_confirmed: "Wir konnten {email} nicht best\u00e4tigen.",
      locked: "Zu viele falsche Codes. Versuchen Sie es in {n} Min. erneut.",
      code_expired: "Der Code ist abgelaufen. Fordern Sie einen neuen an.",
      code_rate: "Wir haben schon mehrere Codes geschickt. Versuchen Sie es in {n} Min. erneut.",
      confirmed: "Danke: {email} ist best\u00e4tigt.", type_code: "Geben Sie den 6-stelligen Code aus der E-Mail ein.",
      check_form: "Bitte pr\u00fcfen Sie das Formular.", went_wrong: "Etwas ist schiefgegangen.",
      bad_email: "Das sieht nicht wie eine E-Mail-Adresse aus.",
      offline_retry: "Sie sind offline; versuchen Sie es gleich noch einmal.", sending_code: "Neuer Code wird gesendet\u2026",
      articles: "Diese Artikel beantworten vielleicht Ihre Frage:", answered: "Hat das Ihre Frage beantwortet?",
      yes: "Ja, danke", no: "Nein, Nachricht senden", glad: "Sch\u00f6n, dass wir helfen konnten!",
      my_requests: "Meine Anfragen ansehen", dismiss_invitation: "Einladung schlie\u00dfen"
    }
  };
  var LANG = /^de\b/i.test(script.getAttribute("data-lang") || navigator.language || "") ? "de" : "en";
  function t(key, vars) {
    var text = (UI[LANG] && UI[LANG][key]) || UI.en[key] || key;
    return text.replace(/\{(\w+)\}/g, function (m, k) { return vars && k in vars ? String(vars[k]) : m; });
  }

  var OFFLINE_TEXT = t("offline_banner");
  var ACK_TIMEOUT = 10000;
  var PING_EVERY = 25000;

  // --- storage (may throw in private modes: degrade to memory) ---------------------------
  function store(kind) {
    try { var s = window[kind]; s.setItem(KEY + ":probe", "1"); s.removeItem(KEY + ":probe"); return s; }
    catch (e) { var mem = {}; return { getItem: function (k) { return k in mem ? mem[k] : null; },
      setItem: function (k, v) { mem[k] = String(v); }, removeItem: function (k) { delete mem[k]; } }; }
  }
  var local = store("localStorage");
  var session = store("sessionStorage");  // per tab: survives a reload of this tab only

  function loadJSON(s, k, dflt) {
    try { var v = s.getItem(KEY + ":" + k); return v ? JSON.parse(v) : dflt; } catch (e) { return dflt; }
  }
  function saveJSON(s, k, v) { try { s.setItem(KEY + ":" + k, JSON.stringify(v)); } catch (e) { /* full */ } }

  function newId() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID().replace(/-/g, ""); }
    var a = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // --- DOM helpers: text only --------------------------------------------------------------
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, k)) { continue; }
        if (k === "className") { node.className = attrs[k]; }
        else if (attrs[k] === true) { node.setAttribute(k, ""); }
        else if (attrs[k] !== false && attrs[k] != null) { node.setAttribute(k, String(attrs[k])); }
      }
    }
    if (text != null) { node.textContent = String(text); }
    return node;
  }
  function show(node, on) { node.hidden = !on; }
  // Text with its http(s) addresses as links (a file an agent sent comes as a download
  // link): built from text nodes and <a> elements, never parsed as HTML.
  var URL_RE = /https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
  function setLinkedText(node, text) {
    while (node.firstChild) { node.removeChild(node.firstChild); }
    var last = 0;
    text.replace(URL_RE, function (url, at) {
      if (at > last) { node.appendChild(document.createTextNode(text.slice(last, at))); }
      var shown = url.length > 48 ? url.slice(0, 44) + "…" : url;  // a signed link is long
      node.appendChild(el("a", { href: url, target: "_blank", rel: "noopener noreferrer nofollow", title: url }, shown));
      last = at + url.length;
      return url;
    });
    if (last < text.length) { node.appendChild(document.createTextNode(text.slice(last))); }
  }

  var CSS = [
    ":host{all:initial;position:fixed;right:20px;bottom:20px;z-index:2147483000;",
    "font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2330}",
    "*{box-sizing:border-box}",
    "[hidden]{display:none !important}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    ".bubble{width:58px;height:58px;border-radius:50%;border:0;background:#2447d5;color:#fff;cursor:pointer;",
    "box-shadow:0 6px 20px rgba(20,30,60,.3);display:flex;align-items:center;justify-content:center;position:relative;float:right}",
    ".bubble:focus-visible,button:focus-visible,textarea:focus-visible,input:focus-visible{outline:3px solid #ffb400;outline-offset:2px}",
    ".bubble svg{width:28px;height:28px;fill:#fff}",
    ".badge{position:absolute;top:-4px;right:-4px;min-width:22px;height:22px;border-radius:11px;background:#d62f2f;",
    "color:#fff;font-size:12px;font-weight:700;display:flex;align-items:center;justify-content:center;padding:0 6px}",
    ".panel{position:absolute;right:0;bottom:72px;width:360px;max-width:calc(100vw - 40px);height:540px;",
    "max-height:calc(100vh - 110px);background:#fff;border-radius:14px;box-shadow:0 12px 40px rgba(20,30,60,.28);",
    "display:flex;flex-direction:column;overflow:hidden;border:1px solid #d8dce6}",
    "header{background:#2447d5;color:#fff;padding:12px 14px;display:flex;align-items:center;gap:8px}",
    "header h2{font-size:16px;margin:0;flex:1;font-weight:600}",
    "header .state{font-size:12px;opacity:.85}",
    ".close{background:transparent;border:0;color:#fff;font-size:22px;line-height:1;cursor:pointer;padding:2px 6px;border-radius:6px}",
    ".banner{background:#fff4d6;color:#5c4300;padding:8px 14px;font-size:13px;border-bottom:1px solid #f0dfa8}",
    ".waitnote{background:#e8f0fe;color:#1a3d7c;padding:8px 14px;font-size:13px;border-bottom:1px solid #c6d6f5}",
    ".conn{background:#eef1f7;color:#3b4357;padding:6px 14px;font-size:12px}",
    ".portal{display:block;padding:6px 14px;font-size:12.5px;background:#f6f8fc;border-bottom:1px solid #e3e6ee;color:#2447d5;font-weight:600;text-decoration:none}",
    ".portal:hover{text-decoration:underline}",
    ".log{list-style:none;margin:0;padding:12px;flex:1;overflow-y:auto;display:flex;flex-direction:column;gap:8px;background:#f6f7fb}",
    ".msg{max-width:82%;display:flex;flex-direction:column}",
    ".msg.in{align-self:flex-end;align-items:flex-end}",
    ".msg.out{align-self:flex-start;align-items:flex-start}",
    // a message or name laid out on its own: a RIGHT-TO-LEFT OVERRIDE in it cannot reverse
    // the text around it
    ".text{padding:8px 12px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;unicode-bidi:plaintext}",
    ".meta .who{unicode-bidi:isolate}",
    ".text a{color:inherit;text-decoration:underline}",
    ".in .text{background:#2447d5;color:#fff;border-bottom-right-radius:4px}",
    ".out .text{background:#fff;border:1px solid #dde1ea;border-bottom-left-radius:4px}",
    ".meta{font-size:11px;color:#646c7f;margin-top:2px;display:flex;gap:6px;align-items:center}",
    ".failed .text{background:#fbe3e3;color:#7a1010;border:1px solid #e7a3a3}",
    ".failed .meta{color:#a01919}",
    ".retry{font:inherit;font-size:11px;background:none;border:1px solid #a01919;color:#a01919;border-radius:10px;padding:0 8px;cursor:pointer}",
    ".typing{padding:4px 14px;font-size:12px;color:#646c7f;font-style:italic;background:#f6f7fb}",
    ".composer{display:flex;gap:8px;padding:10px;border-top:1px solid #e3e6ee;align-items:flex-end}",
    "textarea{flex:1;resize:none;font:inherit;border:1px solid #c4c9d6;border-radius:10px;padding:8px 10px;min-height:42px;max-height:120px;color:inherit}",
    ".send,.primary{background:#2447d5;color:#fff;border:0;border-radius:10px;padding:10px 14px;font:inherit;font-weight:600;cursor:pointer}",
    ".send:disabled{background:#9aa6cf;cursor:default}",
    ".prechat{padding:14px;display:flex;flex-direction:column;gap:8px;border-top:1px solid #e3e6ee}",
    ".prechat p{margin:0;font-size:14px}",
    ".prechat label{font-size:13px;font-weight:600;display:flex;flex-direction:column;gap:3px}",
    ".prechat input{font:inherit;font-weight:400;border:1px solid #c4c9d6;border-radius:8px;padding:7px 9px}",
    ".row{display:flex;gap:8px;justify-content:flex-end}",
    ".secondary{background:#fff;color:#2447d5;border:1px solid #2447d5;border-radius:10px;padding:9px 14px;font:inherit;cursor:pointer}",
    ".error{margin:0;padding:6px 14px;font-size:13px;color:#a01919;background:#fdf0f0}",
    ".verify{padding:10px 14px;display:flex;flex-direction:column;gap:6px;border-top:1px solid #e3e6ee;background:#f3f6ff}",
    ".verify p{margin:0;font-size:13px}",
    ".verify .line{display:flex;gap:8px;align-items:center}",
    ".verify input{font:inherit;width:8em;letter-spacing:.2em;border:1px solid #c4c9d6;border-radius:8px;padding:6px 8px}",
    ".verify .note{color:#3b4357}",
    ".verify .ok{color:#16652c;font-weight:600}",
    ".verify .bad{color:#a01919}",
    ".link{background:none;border:0;color:#2447d5;text-decoration:underline;font:inherit;font-size:13px;cursor:pointer;padding:0}",
    ".survey{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px}",
    ".choice{min-width:36px;padding:6px 10px;border-radius:10px;border:1px solid #2447d5;background:#fff;color:#2447d5;font:inherit;font-weight:600;cursor:pointer}",
    ".choice.chosen{background:#2447d5;color:#fff}",
    ".choice:disabled{cursor:default}",
    ".survey-comment{display:flex;flex-direction:column;gap:6px;margin-top:6px;width:100%}",
    ".survey-comment label{display:flex;flex-direction:column;gap:4px;font-size:14px}",
    ".survey-comment textarea{flex:none;width:100%;min-height:60px}",
    ".survey-thanks{font-size:13px;color:#16652c;font-weight:600;margin-top:4px}",
    ".suggest{border-top:1px solid #e3e6ee;background:#fbfcff;padding:10px 14px;display:flex;flex-direction:column;gap:6px;max-height:55%;overflow-y:auto}",
    ".suggest h3{font-size:13px;margin:0;color:#3b4357;font-weight:600}",
    ".suggest ul{list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:6px}",
    ".suggest li{background:#fff;border:1px solid #dde1ea;border-radius:10px;padding:7px 10px}",
    ".suggest a{color:#2447d5;font-weight:600;text-decoration:none}",
    ".suggest a:hover{text-decoration:underline}",
    ".suggest .snip{font-size:12.5px;color:#4a5266;margin:2px 0 0}",
    ".suggest mark{background:#fff0a0;color:inherit;padding:0 1px;border-radius:2px}",
    ".suggest .ask{font-size:13px;margin:2px 0 0;font-weight:600}",
    ".suggest .row{justify-content:flex-start}",
    ".suggest button{padding:6px 12px;font-size:13px}",
    ".glad{margin:0;padding:8px 14px;font-size:13px;color:#16652c;background:#eef9f0;border-top:1px solid #cfe9d5}",
    ".invite{position:absolute;right:0;bottom:72px;width:280px;max-width:calc(100vw - 40px);background:#fff;",
    "border:1px solid #d8dce6;border-radius:14px;box-shadow:0 8px 28px rgba(20,30,60,.22);display:flex;align-items:flex-start}",
    ".invite .invite-text{flex:1;text-align:left;background:none;border:0;font:inherit;color:inherit;padding:12px 6px 12px 14px;cursor:pointer;white-space:pre-wrap;overflow-wrap:anywhere}",
    ".invite .invite-close{background:none;border:0;font-size:18px;line-height:1;color:#646c7f;cursor:pointer;padding:8px 10px}"
  ].join("\n");

  // --- state -------------------------------------------------------------------------------
  var state = {
    token: local.getItem(KEY + ":token"),
    profile: loadJSON(local, "profile", null),
    prechatDone: local.getItem(KEY + ":prechat") === "done",
    pending: loadJSON(session, "pending", []),  // [{client_id, text}] not yet acknowledged
    ws: null,
    ready: false,        // welcome received on the current socket
    attempt: 0,
    retryTimer: null,
    pingTimer: null,
    ackTimer: null,
    open: false,
    unread: 0,
    maxChars: 4000,
    prechat: true,
    typingSentAt: 0,
    typingTimer: null,
    agentTypingTimer: null,
    hadHistory: false,
    welcomed: false,
    suggestOn: false,    // the gateway offers knowledge-base suggestions
    suggestSeq: 0,
    suggestTimer: null,
    suggested: null,     // {items, texts} on screen
    shownKey: "",        // the set last recorded as shown
    invitation: null,    // {name, text}: the invitation the visitor answers
    inviteTimer: null
  };
  var items = {};  // key → {li, meta, data}

  // --- build the widget ------------------------------------------------------------------
  var host = el("div", { id: "switchboard-webchat-" + channel, "data-switchboard-webchat": channel,
    lang: LANG });
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } else {
    root.appendChild(el("style", null, CSS));
  }

  var panelId = "sbw-panel";
  var bubble = el("button", { type: "button", className: "bubble", "aria-label": t("open_chat"),
    "aria-expanded": "false", "aria-controls": panelId, part: "bubble" });
  var svgNS = "http://www.w3.org/2000/svg";
  var svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  var path = document.createElementNS(svgNS, "path");
  path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z");
  svg.appendChild(path);
  bubble.appendChild(svg);
  var badge = el("span", { className: "badge", "aria-hidden": "true" });
  show(badge, false);
  bubble.appendChild(badge);

  var panel = el("section", { id: panelId, className: "panel", role: "dialog", "aria-labelledby": "sbw-title" });
  show(panel, false);
  var header = el("header");
  var title = el("h2", { id: "sbw-title" }, t("title"));
  var connState = el("span", { className: "state" });
  var closeBtn = el("button", { type: "button", className: "close", "aria-label": t("close_chat") }, "\u00d7");
  header.appendChild(title);
  header.appendChild(connState);
  header.appendChild(closeBtn);

  var banner = el("div", { className: "banner", role: "status" }, OFFLINE_TEXT);
  show(banner, false);
  // Where the visitor stands, worded by the gateway in the visitor's language: closed
  // until ..., or their position in the queue and the estimated wait.
  var waitNote = el("div", { className: "waitnote", role: "status", "aria-live": "polite",
    "data-state": "served" });
  show(waitNote, false);
  var conn = el("div", { className: "conn", role: "status" }, t("connecting"));
  // Issue 15: "See my requests": the customer portal, in a new tab (a signed link the
  // gateway makes for this visitor's contact, once there is one).
  var portalLink = el("a", { className: "portal", target: "_blank", rel: "noopener noreferrer",
    "data-testid": "portal-link" });
  show(portalLink, false);
  show(conn, false);
  var log = el("ol", { className: "log", role: "log", "aria-live": "polite", "aria-label": t("messages") });
  var typing = el("div", { className: "typing", "aria-live": "polite" }, t("agent_typing"));
  show(typing, false);

  var prechat = el("form", { className: "prechat", "aria-label": t("before_start"), novalidate: true });
  prechat.appendChild(el("p", null, t("prechat_intro")));
  var nameLabel = el("label", null, t("name"));
  var nameInput = el("input", { type: "text", name: "name", autocomplete: "name", maxlength: "100" });
  nameLabel.appendChild(nameInput);
  var emailLabel = el("label", null, t("email"));
  var emailInput = el("input", { type: "email", name: "email", autocomplete: "email", maxlength: "254" });
  emailLabel.appendChild(emailInput);
  var prechatError = el("p", { className: "error", role: "alert" });
  show(prechatError, false);
  var prechatRow = el("div", { className: "row" });
  var skipBtn = el("button", { type: "button", className: "secondary" }, t("skip"));
  var startBtn = el("button", { type: "submit", className: "primary" }, t("start_chat"));
  prechatRow.appendChild(skipBtn);
  prechatRow.appendChild(startBtn);
  prechat.appendChild(nameLabel);
  prechat.appendChild(emailLabel);
  prechat.appendChild(prechatError);
  prechat.appendChild(prechatRow);
  show(prechat, false);

  // Proving the pre-chat email: the code mailed to it, typed here.
  var verify = el("form", { className: "verify", "aria-label": t("confirm_address"), novalidate: true });
  var verifyText = el("p", { className: "note", role: "status" });
  var verifyLine = el("div", { className: "line" });
  var codeLabel = el("label", { className: "sr", "for": "sbw-code" }, t("code"));
  var codeInput = el("input", { id: "sbw-code", type: "text", name: "code", inputmode: "numeric",
    autocomplete: "one-time-code", maxlength: "6", pattern: "[0-9]{6}", placeholder: "123456" });
  var codeBtn = el("button", { type: "submit", className: "primary" }, t("confirm"));
  verifyLine.appendChild(codeLabel);
  verifyLine.appendChild(codeInput);
  verifyLine.appendChild(codeBtn);
  var verifyResult = el("p", { role: "alert" });
  var resendBtn = el("button", { type: "button", className: "link" }, t("new_code"));
  verify.appendChild(verifyText);
  verify.appendChild(verifyLine);
  verify.appendChild(verifyResult);
  verify.appendChild(resendBtn);
  show(verify, false);

  var composer = el("form", { className: "composer", "aria-label": t("write") });
  var inputId = "sbw-input";
  composer.appendChild(el("label", { className: "sr", "for": inputId }, t("your_message")));
  var input = el("textarea", { id: inputId, rows: "2", placeholder: t("write_placeholder"),
    "aria-describedby": "sbw-error" });
  var sendBtn = el("button", { type: "submit", className: "send" }, t("send"));
  composer.appendChild(input);
  composer.appendChild(sendBtn);
  var errorBox = el("p", { id: "sbw-error", className: "error", role: "alert" });
  show(errorBox, false);

  // Knowledge-base articles for what the visitor types, before a conversation exists:
  // "Did this answer your question?" Yes: nothing is sent. No: the message goes, carrying
  // the articles shown.
  var suggestBox = el("section", { className: "suggest", "aria-live": "polite",
    "aria-labelledby": "sbw-suggest-title", "data-testid": "suggestions" });
  var suggestTitle = el("h3", { id: "sbw-suggest-title" });
  var suggestList = el("ul");
  var suggestAsk = el("p", { className: "ask" });
  var suggestRow = el("div", { className: "row" });
  var yesBtn = el("button", { type: "button", className: "secondary", "data-answer": "yes" });
  var noBtn = el("button", { type: "button", className: "primary", "data-answer": "no" });
  suggestRow.appendChild(yesBtn);
  suggestRow.appendChild(noBtn);
  suggestBox.appendChild(suggestTitle);
  suggestBox.appendChild(suggestList);
  suggestBox.appendChild(suggestAsk);
  suggestBox.appendChild(suggestRow);
  show(suggestBox, false);
  var gladNote = el("p", { className: "glad", role: "status" });
  show(gladNote, false);

  panel.appendChild(header);
  panel.appendChild(banner);
  panel.appendChild(waitNote);
  panel.appendChild(conn);
  panel.appendChild(portalLink);
  panel.appendChild(log);
  panel.appendChild(typing);
  panel.appendChild(errorBox);
  panel.appendChild(gladNote);
  panel.appendChild(suggestBox);
  panel.appendChild(prechat);
  panel.appendChild(verify);
  panel.appendChild(composer);
  root.appendChild(panel);
  root.appendChild(bubble);

  // A proactive invitation (issue 15): shown by the channel's rules on page URL, time on
  // page and visitor attributes; it opens nothing until the visitor writes.
  var invite = el("div", { className: "invite", role: "status", "data-testid": "invitation" });
  var inviteText = el("button", { type: "button", className: "invite-text" });
  var inviteClose = el("button", { type: "button", className: "invite-close",
    "aria-label": t("dismiss_invitation") }, "\u00d7");
  invite.appendChild(inviteText);
  invite.appendChild(inviteClose);
  show(invite, false);
  root.appendChild(invite);

  function mount() { (document.body || document.documentElement).appendChild(host); }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }

  // --- rendering -------------------------------------------------------------------------
  function fmtTime(iso) {
    if (!iso) { return ""; }
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return ""; }
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function atBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }

  function upsert(key, data) {
    var item = items[key];
    var stick = atBottom();
    if (!item) {
      var li = el("li", { className: "msg " + (data.direction === "in" ? "in" : "out") });
      var text = el("div", { className: "text" });
      var meta = el("div", { className: "meta" });
      li.appendChild(text);
      li.appendChild(meta);
      item = items[key] = { li: li, text: text, meta: meta, data: {} };
      log.appendChild(li);
      stick = true;
    }
    for (var k in data) { if (Object.prototype.hasOwnProperty.call(data, k)) { item.data[k] = data[k]; } }
    var d = item.data;
    setLinkedText(item.text, d.text == null ? "" : String(d.text));
    item.li.setAttribute("data-key", key);
    if (d.id) { item.li.setAttribute("data-id", d.id); }
    renderMeta(item);
    if (stick) { log.scrollTop = log.scrollHeight; }
    return item;
  }

  function renderMeta(item) {
    var d = item.data;
    var meta = item.meta;
    while (meta.firstChild) { meta.removeChild(meta.firstChild); }
    item.li.classList.toggle("failed", d.state === "failed");
    if (d.direction === "in") {
      item.li.setAttribute("data-state", d.state || "sent");
      var label = d.state === "sending" ? t("sending") : d.state === "failed" ?
        t("not_sent") + (d.reason ? ": " + d.reason : "") : t("sent");
      var time = fmtTime(d.created_at);
      meta.appendChild(el("span", { className: "status" }, label + (time && d.state === "sent" ? " \u00b7 " + time : "")));
      if (d.state === "failed") {
        var retry = el("button", { type: "button", className: "retry" }, t("retry"));
        retry.addEventListener("click", function () { resend(d.client_id); });
        meta.appendChild(retry);
      }
    } else {
      var who = d.sender_name || (d.greeting ? "" : t("support"));
      var at = fmtTime(d.created_at);
      if (who || at) {
        var line = el("span");
        if (who) { line.appendChild(el("span", { className: "who" }, who)); }
        if (who && at) { line.appendChild(document.createTextNode(" \u00b7 ")); }
        if (at) { line.appendChild(document.createTextNode(at)); }
        meta.appendChild(line);
      }
    }
  }

  function setUnread(n) {
    state.unread = n;
    show(badge, n > 0);
    badge.textContent = n > 9 ? "9+" : String(n);
    bubble.setAttribute("aria-label", n > 0 ? t("open_chat_unread", { n: n }) : t("open_chat"));
  }

  function showError(text) {
    errorBox.textContent = text || "";
    show(errorBox, !!text);
  }

  function setConn(text) {
    conn.textContent = text || "";
    show(conn, !!text);
    connState.textContent = state.ready ? "" : t("offline_state");
  }

  function updateForms() {
    var ask = state.prechat && !state.prechatDone && !state.profile && !state.hadHistory &&
      state.pending.length === 0;
    show(prechat, ask);
    show(composer, !ask);
  }

  // --- socket ----------------------------------------------------------------------------
  var OFFLINE_CONN = t("offline_conn");

  function connect() {
    if (state.ws) { return; }
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    if (navigator.onLine === false) { setConn(OFFLINE_CONN); return; }  // "online" reconnects
    var ws;
    try { ws = new WebSocket(wsUrl); } catch (e) { scheduleReconnect(); return; }
    state.ws = ws;
    state.ready = false;
    if (state.welcomed) { setConn(t("reconnecting")); }
    ws.onopen = function () {
      // Another tab may hold a newer (renewed) token: tokens expire after a while unused.
      state.token = local.getItem(KEY + ":token") || state.token;
      ws.send(JSON.stringify({ type: "hello", token: state.token || null,
        language: navigator.language || "" }));
    };
    ws.onmessage = function (ev) {
      var frame;
      try { frame = JSON.parse(ev.data); } catch (e) { return; }
      if (frame && typeof frame === "object") { onFrame(frame); }
    };
    ws.onclose = function (ev) {
      if (state.ws !== ws) { return; }
      state.ws = null;
      state.ready = false;
      clearInterval(state.pingTimer);
      clearTimeout(state.ackTimer);
      if (navigator.onLine === false) { setConn(OFFLINE_CONN); return; }
      setConn(t("connection_lost"));
      scheduleReconnect(ev.code === 4429 ? 30000 : 0);
    };
    ws.onerror = function () { /* onclose follows */ };
  }

  function drop() {
    // The socket looks dead (browser offline, no pong, no ack): close it and start over.
    var ws = state.ws;
    if (!ws) { return; }
    state.ws = null;
    state.ready = false;
    clearInterval(state.pingTimer);
    clearTimeout(state.ackTimer);
    try { ws.close(); } catch (e) { /* already closing */ }
    setConn(navigator.onLine === false ? OFFLINE_CONN : t("connection_lost"));
    if (navigator.onLine !== false) { scheduleReconnect(); }
  }

  function scheduleReconnect(minDelay) {
    if (state.retryTimer) { return; }
    var base = Math.min(30000, 500 * Math.pow(2, state.attempt));
    var delay = Math.max(minDelay || 0, base / 2 + Math.random() * base / 2);
    state.attempt += 1;
    state.retryTimer = setTimeout(function () { state.retryTimer = null; connect(); }, delay);
  }

  function send(frame) {
    if (!state.ws || !state.ready || state.ws.readyState !== 1) { return false; }
    try { state.ws.send(JSON.stringify(frame)); return true; } catch (e) { return false; }
  }

  function onFrame(f) {
    switch (f.type) {
      case "welcome": onWelcome(f); break;
      case "ack": onAck(f); break;
      case "message": onMessage(f); break;
      case "typing": onTyping(!!f.typing); break;
      case "availability": show(banner, !f.agents_online && !closedNow()); break;
      case "status": onStatus(f); break;
      case "profile":
        state.profile = f.profile || null;
        saveJSON(local, "profile", state.profile);
        updateForms();
        break;
      case "error": onError(f); break;
      case "token": saveToken(f.token); break;
      case "verification": onVerification(f); break;
      case "suggestions": onSuggestions(f); break;
      case "portal": onPortal(f); break;
      default: break;
    }
  }

  function onPortal(f) {
    if (!f || !f.url) { return; }
    portalLink.href = f.url;
    portalLink.textContent = f.label || t("my_requests");
    show(portalLink, true);
  }

  function closedNow() { return waitNote.getAttribute("data-state") === "closed"; }

  function onStatus(f) {
    var text = f && f.text;
    waitNote.setAttribute("data-state", (f && f.state) || "served");
    waitNote.textContent = text || "";
    show(waitNote, !!text);
    // "Closed, back at 08:00" says more than "nobody is online".
    if (closedNow()) { show(banner, false); }
  }

  function onWelcome(f) {
    state.ready = true;
    state.attempt = 0;
    state.welcomed = true;
    setConn("");
    saveToken(f.token);
    if (f.renewed) {
      // The old token was not accepted: this is a new visitor; forget what the old one saw.
      state.profile = null;
      saveJSON(local, "profile", null);
      state.prechatDone = false;
      try { local.removeItem(KEY + ":prechat"); } catch (e) { /* ignore */ }
    }
    title.textContent = f.title || t("title");
    state.suggestOn = f.suggest === true;
    state.portalOn = f.portal === true;
    onPortal(f.portal_link);
    state.maxChars = f.max_message_chars || 4000;
    state.prechat = f.prechat !== false;
    if (f.profile) { state.profile = f.profile; saveJSON(local, "profile", f.profile); }
    else if (state.profile && (state.profile.name || state.profile.email)) {
      // The pre-chat form was filled before the socket was ready: send it before any message.
      send({ type: "profile", name: state.profile.name || "", email: state.profile.email || "" });
    }
    onVerification(f.verification ? { status: f.verification.status, email: f.verification.email, welcome: true }
      : { status: "none" });
    onStatus(f.status);
    show(banner, !f.agents_online && !closedNow());
    if (f.greeting && !items.greeting) {
      upsert("greeting", { direction: "out", text: f.greeting, greeting: true });
      log.insertBefore(items.greeting.li, log.firstChild);
    }
    var history = f.history || [];
    state.hadHistory = history.length > 0;
    for (var i = 0; i < history.length; i++) { renderServerMessage(history[i], true); }
    // Resend what this tab sent but never saw acknowledged, in order, by client id.
    var still = [];
    for (var j = 0; j < state.pending.length; j++) {
      var p = state.pending[j];
      var item = items["c:" + p.client_id];
      if (item && item.data.state === "sent") { continue; }
      still.push(p);
    }
    state.pending = still;
    saveJSON(session, "pending", still);
    for (var k = 0; k < still.length; k++) {
      var it = items["c:" + still[k].client_id];
      if (!it || it.data.state !== "failed") { transmit(still[k]); }
    }
    clearInterval(state.pingTimer);
    state.pingTimer = setInterval(function () { send({ type: "ping" }); }, PING_EVERY);
    updateForms();
  }

  function renderServerMessage(m, fromHistory) {
    if (m.direction === "in") {
      var key = "c:" + (m.client_id || m.id);
      upsert(key, { id: m.id, direction: "in", client_id: m.client_id, text: m.text,
        state: "sent", created_at: m.created_at });
      dropPending(m.client_id);
    } else {
      var isNew = !items["m:" + m.id];
      var out = upsert("m:" + m.id, { id: m.id, direction: "out", text: m.text,
        sender_name: m.sender_name, created_at: m.created_at });
      if (m.prompt) { renderPrompt(out, m.prompt); }
      if (isNew && !fromHistory) {
        onTyping(false);
        if (!state.open || document.hidden) { setUnread(state.unread + 1); }
      }
    }
  }

  function onMessage(f) { renderServerMessage(f, false); }

  // --- surveys: buttons under the question, then an optional comment -----------------------
  function renderPrompt(item, prompt) {
    if (item.prompt || !prompt.choices) { return; }
    var texts = prompt.texts || {};
    var box = el("div", { className: "survey", role: "group", "data-prompt": prompt.id });
    var buttons = [];
    prompt.choices.forEach(function (c) {
      var b = el("button", { type: "button", className: "choice", "data-value": c.value }, c.label);
      b.addEventListener("click", function () {
        if (!send({ type: "answer", client_id: newId(), prompt: prompt.id, value: c.value })) { return; }
        buttons.forEach(function (x) { x.disabled = true; });
        b.classList.add("chosen");
        b.setAttribute("aria-pressed", "true");
        box.appendChild(el("div", { className: "survey-thanks", role: "status" }, texts.thanks || "Thank you!"));
        if (prompt.comment) { renderComment(box, prompt, texts); }
        log.scrollTop = log.scrollHeight;
      });
      buttons.push(b);
      box.appendChild(b);
    });
    item.li.appendChild(box);
    item.prompt = box;
  }

  function renderComment(box, prompt, texts) {
    var form = el("form", { className: "survey-comment" });
    var label = el("label", null, texts.comment_prompt || t("anything_to_add"));
    var area = el("textarea", { name: "comment", rows: 2, maxlength: 4000 });
    label.appendChild(area);
    var submit = el("button", { type: "submit", className: "primary" }, texts.comment_submit || t("send"));
    form.appendChild(label);
    form.appendChild(submit);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = area.value.trim();
      if (!text) { return; }
      if (!send({ type: "answer", client_id: newId(), prompt: prompt.id, comment: text })) { return; }
      area.disabled = true;
      submit.disabled = true;
      form.classList.add("sent");
      form.appendChild(el("div", { className: "survey-thanks", role: "status" },
        texts.comment_thanks || t("thank_you")));
      log.scrollTop = log.scrollHeight;
    });
    box.appendChild(form);
  }

  function saveToken(token) {
    if (!token || token === state.token) { return; }
    state.token = token;
    try { local.setItem(KEY + ":token", token); } catch (e) { /* ignore */ }
  }

  function minutes(seconds) { return Math.max(1, Math.ceil((seconds || 60) / 60)); }

  function verifyNote(text, cls) {
    verifyResult.textContent = text || "";
    verifyResult.className = cls || "";
    show(verifyResult, !!text);
  }

  // The email typed in the pre-chat form is only a claim until the visitor types the code
  // mailed to it. Nothing about the address's owner is ever shown here.
  function onVerification(f) {
    var email = f.email || "";
    var form = true;
    codeInput.disabled = false;
    codeBtn.disabled = false;
    show(resendBtn, true);
    switch (f.status) {
      case "sent":
        verifyText.textContent = t("code_sent", { email: email });
        verifyNote("");
        codeInput.value = "";
        break;
      case "pending":
        verifyText.textContent = t("code_pending", { email: email });
        verifyNote("");
        break;
      case "wrong_code":
        verifyNote(f.attempts_left === 1 ? t("code_wrong_one") : t("code_wrong", { n: f.attempts_left }), "bad");
        codeInput.select();
        break;
      case "locked":
        verifyText.textContent = t("not_confirmed", { email: email });
        verifyNote(t("locked", { n: minutes(f.retry_after) }), "bad");
        codeInput.disabled = true;
        codeBtn.disabled = true;
        show(resendBtn, false);
        break;
      case "expired":
        verifyNote(t("code_expired"), "bad");
        codeInput.disabled = true;
        codeBtn.disabled = true;
        break;
      case "rate_limited":
        verifyNote(t("code_rate", { n: minutes(f.retry_after) }), "bad");
        break;
      case "verified":
        verifyText.textContent = "";
        verifyNote(f.welcome ? "" : t("confirmed", { email: email }), "ok");
        show(verifyLine, false);
        show(resendBtn, false);
        form = !f.welcome;
        break;
      default:  // "unverified", "none", "unavailable": nothing to type
        form = false;
    }
    if (f.status !== "verified") { show(verifyLine, true); }
    show(verify, form);
  }

  function dropPending(clientId) {
    if (!clientId) { return; }
    var before = state.pending.length;
    state.pending = state.pending.filter(function (p) { return p.client_id !== clientId; });
    if (state.pending.length !== before) { saveJSON(session, "pending", state.pending); }
    if (state.pending.length === 0) { clearTimeout(state.ackTimer); state.ackTimer = null; }
  }

  function onAck(f) {
    var key = "c:" + f.client_id;
    if (items[key]) {
      upsert(key, { id: f.message_id, state: "sent", reason: null,
        created_at: items[key].data.created_at || new Date().toISOString() });
    }
    dropPending(f.client_id);
    state.hadHistory = true;
    // The first message made a contact: now there is a portal to show.
    if (state.portalOn && portalLink.hidden) { send({ type: "portal" }); }
  }

  function onError(f) {
    if (f.client_id && items["c:" + f.client_id]) {
      if (f.code === "unavailable") {
        setTimeout(function () { resend(f.client_id); }, 2000);
        return;
      }
      upsert("c:" + f.client_id, { state: "failed", reason: f.message || f.code });
      dropPending(f.client_id);  // refused, not lost: "Retry" sends it again
      return;
    }
    if (f.code === "invalid_code") {
      verifyNote(t("type_code"), "bad");
      return;
    }
    if (f.code === "invalid_profile") {
      prechatError.textContent = f.message || t("check_form");
      show(prechatError, true);
      show(prechat, true);
      show(composer, false);
      return;
    }
    showError(f.message || t("went_wrong"));
  }

  function onTyping(on) {
    clearTimeout(state.agentTypingTimer);
    show(typing, on);
    if (on) { state.agentTypingTimer = setTimeout(function () { show(typing, false); }, 6000); }
  }

  function armAckTimer() {
    if (state.ackTimer) { return; }
    state.ackTimer = setTimeout(function () {
      state.ackTimer = null;
      if (state.pending.length && state.ws) { drop(); }  // no answer: the socket is stale
    }, ACK_TIMEOUT);
  }

  function transmit(p) {
    var frame = { type: "message", client_id: p.client_id, text: p.text };
    if (p.suggestions) { frame.suggestions = p.suggestions; }
    if (p.invitation) { frame.invitation = p.invitation; }
    if (send(frame)) { armAckTimer(); }
    else { connect(); }
  }

  function resend(clientId) {
    var item = items["c:" + clientId];
    if (!item) { return; }
    var p = null;
    for (var i = 0; i < state.pending.length; i++) {
      if (state.pending[i].client_id === clientId) { p = state.pending[i]; }
    }
    if (!p) {
      p = { client_id: clientId, text: item.data.text };
      state.pending.push(p);
      saveJSON(session, "pending", state.pending);
    }
    upsert("c:" + clientId, { state: "sending", reason: null });
    transmit(p);
  }

  // --- user actions ----------------------------------------------------------------------
  function submitMessage() {
    var text = input.value;
    if (!text.trim()) { return; }
    if (text.length > state.maxChars) {
      showError("The message is too long (" + text.length + " characters; at most " + state.maxChars + ").");
      return;
    }
    showError("");
    var p = { client_id: newId(), text: text };
    if (state.suggested) { p.suggestions = refs(state.suggested.items); }
    if (state.invitation) { p.invitation = state.invitation.name; state.invitation = null; }
    hideSuggestions();
    state.pending.push(p);
    saveJSON(session, "pending", state.pending);
    upsert("c:" + p.client_id, { direction: "in", client_id: p.client_id, text: text, state: "sending" });
    input.value = "";
    state.typingSentAt = 0;
    clearTimeout(state.typingTimer);
    transmit(p);
    input.focus();
  }

  // --- knowledge-base suggestions ---------------------------------------------------------
  function suggesting() {
    return state.suggestOn && !state.hadHistory && state.pending.length === 0;
  }

  function refs(list) {
    return list.map(function (a) { return { slug: a.slug, language: a.language }; });
  }

  function hideSuggestions() {
    state.suggested = null;
    state.suggestSeq += 1;  // an answer still on its way is stale now
    clearTimeout(state.suggestTimer);
    show(suggestBox, false);
  }

  function askSuggestions() {
    clearTimeout(state.suggestTimer);
    if (!suggesting()) { return; }
    show(gladNote, false);
    var text = input.value.trim();
    if (text.length < 3) { hideSuggestions(); return; }
    state.suggestTimer = setTimeout(function () {
      state.suggestSeq += 1;
      send({ type: "suggest", id: "s" + state.suggestSeq, text: text.slice(0, 500) });
    }, 350);
  }

  function onSuggestions(f) {
    if (f.id !== "s" + state.suggestSeq || !suggesting()) { return; }
    var list = f.items || [];
    if (!list.length) { state.suggested = null; show(suggestBox, false); return; }
    var texts = f.texts || {};
    state.suggested = { items: list, texts: texts };
    suggestTitle.textContent = texts.heading || t("articles");
    suggestAsk.textContent = texts.question || t("answered");
    yesBtn.textContent = texts.yes || t("yes");
    noBtn.textContent = texts.no || t("no");
    while (suggestList.firstChild) { suggestList.removeChild(suggestList.firstChild); }
    list.forEach(function (a) {
      var li = el("li", { "data-slug": a.slug });
      var link = el("a", { href: new URL(a.url, src.origin).href, target: "_blank",
        rel: "noopener" }, a.title);
      link.addEventListener("click", function () {
        send({ type: "suggestion", event: "clicked", items: refs([a]) });
      });
      li.appendChild(link);
      var snip = el("p", { className: "snip" });
      (a.snippet || []).forEach(function (part) {
        snip.appendChild(part[1] ? el("mark", null, part[0]) : document.createTextNode(String(part[0])));
      });
      li.appendChild(snip);
      suggestList.appendChild(li);
    });
    show(suggestBox, true);
    var key = list.map(function (a) { return a.language + "/" + a.slug; }).join(",");
    if (key !== state.shownKey) {
      state.shownKey = key;
      send({ type: "suggestion", event: "shown", items: refs(list) });
    }
  }

  yesBtn.addEventListener("click", function () {
    var shown = state.suggested;
    if (!shown) { return; }
    send({ type: "suggestion", event: "answered", helpful: true, items: refs(shown.items) });
    hideSuggestions();
    input.value = "";
    state.shownKey = "";
    gladNote.textContent = shown.texts.glad || t("glad");
    show(gladNote, true);
  });
  noBtn.addEventListener("click", function () {
    var shown = state.suggested;
    if (!shown) { return; }
    send({ type: "suggestion", event: "answered", helpful: false, items: refs(shown.items) });
    submitMessage();
  });

  function onInput() {
    askSuggestions();
    var now = Date.now();
    if (now - state.typingSentAt > 2500) {
      if (send({ type: "typing", typing: true })) { state.typingSentAt = now; }
    }
    clearTimeout(state.typingTimer);
    state.typingTimer = setTimeout(function () {
      if (state.typingSentAt) { send({ type: "typing", typing: false }); state.typingSentAt = 0; }
    }, 3000);
  }

  function openPanel() {
    var answered = state.invitation;  // opened while invited: the visitor answers it
    hideInvitation();
    if (answered && !items.invitation) {
      upsert("invitation", { direction: "out", text: answered.text, greeting: true });
    }
    state.open = true;
    show(panel, true);
    bubble.setAttribute("aria-expanded", "true");
    setUnread(0);
    if (!state.ws) { connect(); }
    if (!state.welcomed) { setConn(t("connecting")); }
    updateForms();
    log.scrollTop = log.scrollHeight;
    (prechat.hidden ? input : nameInput).focus();
  }

  function closePanel() {
    state.open = false;
    show(panel, false);
    bubble.setAttribute("aria-expanded", "false");
    bubble.focus();
  }

  // --- proactive invitations ---------------------------------------------------------------
  var pageStart = Date.now();
  function visitorAttributes() {
    try {
      var a = JSON.parse(script.getAttribute("data-attributes") || "{}");
      return a && typeof a === "object" ? a : {};
    } catch (e) { return {}; }
  }
  function globMatch(glob, text) {
    var re = "^" + glob.split("*").map(function (part) {
      return part.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
    }).join(".*") + "$";
    return new RegExp(re).test(text);
  }
  function inviteHolds(rule, attrs) {
    if (rule.url && !globMatch(rule.url, location.pathname + location.search) &&
        !globMatch(rule.url, location.pathname)) { return false; }
    var want = rule.attributes || {};
    for (var k in want) {
      if (Object.prototype.hasOwnProperty.call(want, k) && String(attrs[k]) !== String(want[k])) { return false; }
    }
    return true;
  }
  function inviteWording(text) {
    return (LANG === "de" ? text.de || text.en : text.en || text.de) || "";
  }
  function hideInvitation() {
    clearTimeout(state.inviteTimer);
    show(invite, false);
  }
  function invitationsUrl() {
    return src.origin + "/webchat/" + encodeURIComponent(channel) + "/invitations";
  }
  function inviteSuppressed() {
    // Not over an open chat, not to a visitor already talking, not after a dismissal.
    return state.open || state.hadHistory || state.pending.length ||
      session.getItem(KEY + ":invite-dismissed");
  }
  function fetchInvitations(fresh) {
    // `fresh`: past the browser's cache, for the check just before showing one.
    return fetch(invitationsUrl(), { credentials: "omit", cache: fresh ? "no-store" : "default" })
      .then(function (r) { return r.ok ? r.json() : { invitations: [] }; })
      .then(function (body) { return (body && body.invitations) || []; });
  }
  function showInvitation(rule, loaded) {
    if (inviteSuppressed()) { return; }
    // The page may have been open for minutes: ask again whether the rule is still offered
    // (the channel may have closed, or the last agent gone offline since); an answer of
    // the last two seconds is still good.
    var offer = Date.now() - loaded.at < 2000 ? Promise.resolve(loaded.rules) : fetchInvitations(true);
    offer.then(function (rules) {
      var offered = rules.some(function (r) { return r.name === rule.name; });
      if (!offered || inviteSuppressed()) { return; }
      state.invitation = { name: rule.name, text: inviteWording(rule.text) };
      inviteText.textContent = state.invitation.text;
      invite.setAttribute("data-rule", rule.name);
      show(invite, true);
      // Counted by the gateway (shown, and later answered); a lost report changes nothing.
      fetch(invitationsUrl() + "/" + encodeURIComponent(rule.name) + "/shown",
        { method: "POST", credentials: "omit", keepalive: true }).catch(function () {});
    }).catch(function () { /* no invitation: the chat works as before */ });
  }
  function loadInvitations() {
    if (!window.fetch || session.getItem(KEY + ":invite-dismissed")) { return; }
    fetchInvitations(false).then(function (rules) {
      var loaded = { rules: rules, at: Date.now() };
      var attrs = visitorAttributes();
      for (var i = 0; i < rules.length; i++) {
        if (!inviteHolds(rules[i], attrs)) { continue; }
        var rule = rules[i];
        var wait = Math.max(0, (rule.seconds_on_page || 0) * 1000 - (Date.now() - pageStart));
        state.inviteTimer = setTimeout(function () { showInvitation(rule, loaded); }, wait);
        return;
      }
    }).catch(function () { /* no invitation: the chat works as before */ });
  }
  inviteText.addEventListener("click", function () { openPanel(); });
  inviteClose.addEventListener("click", function () {
    hideInvitation();
    state.invitation = null;
    try { session.setItem(KEY + ":invite-dismissed", "1"); } catch (e) { /* ignore */ }
  });

  bubble.addEventListener("click", function () { if (state.open) { closePanel(); } else { openPanel(); } });
  closeBtn.addEventListener("click", closePanel);
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") { closePanel(); } });
  composer.addEventListener("submit", function (e) { e.preventDefault(); submitMessage(); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submitMessage(); }
  });
  input.addEventListener("input", onInput);
  prechat.addEventListener("submit", function (e) {
    e.preventDefault();
    var email = emailInput.value.trim();
    var name = nameInput.value.trim();
    if (email && !/^[^@\s]+@[^@\s]+\.[^@\s.]+$/.test(email)) {
      prechatError.textContent = t("bad_email");
      show(prechatError, true);
      emailInput.focus();
      return;
    }
    show(prechatError, false);
    state.prechatDone = true;
    try { local.setItem(KEY + ":prechat", "done"); } catch (err) { /* ignore */ }
    if (name || email) {
      state.profile = { name: name, email: email };
      saveJSON(local, "profile", state.profile);
      send({ type: "profile", name: name, email: email });
    }
    updateForms();
    input.focus();
  });
  verify.addEventListener("submit", function (e) {
    e.preventDefault();
    var code = codeInput.value.replace(/\s+/g, "");
    if (!/^[0-9]{6}$/.test(code)) {
      verifyNote(t("type_code"), "bad");
      codeInput.focus();
      return;
    }
    if (!send({ type: "verify", code: code })) { verifyNote(t("offline_retry"), "bad"); }
  });
  resendBtn.addEventListener("click", function () {
    if (send({ type: "verify_resend" })) { verifyNote(t("sending_code")); }
  });
  skipBtn.addEventListener("click", function () {
    state.prechatDone = true;
    try { local.setItem(KEY + ":prechat", "done"); } catch (err) { /* ignore */ }
    updateForms();
    input.focus();
  });
  window.addEventListener("offline", function () { drop(); });
  window.addEventListener("online", function () {
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    state.attempt = 0;
    if (!state.ws && (state.welcomed || state.open)) { connect(); }
  });

  // Render what this tab had not yet sent (it survives a reload of the tab).
  for (var q = 0; q < state.pending.length; q++) {
    upsert("c:" + state.pending[q].client_id, { direction: "in", client_id: state.pending[q].client_id,
      text: state.pending[q].text, state: "sending" });
  }
  // A returning visitor connects at once (replies arrive with an unread badge);
  // a new one only when they open the chat.
  if (state.token || state.pending.length) { connect(); }
  loadInvitations();

  window.SwitchboardWebchat = window.SwitchboardWebchat || {};
  window.SwitchboardWebchat[channel] = { open: openPanel, close: closePanel };
})();
