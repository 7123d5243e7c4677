/*
 * The console's words in English and German, and dates in the agent's locale and time zone.
 * The language comes from the browser unless the agent chose one (remembered in
 * localStorage). `t(key, {name: …})` fills `{name}`; elements carry `data-i18n` (text),
 * `data-i18n-placeholder` and `data-i18n-aria-label`, filled by `apply()`.
 */
"use strict";

(function () {
  const LANG_KEY = "switchboard-console-lang";

  const TEXT = {
    en: {
      skip: "Skip to the conversation", subtitle: "agent console", language: "Language",
      presence: "Presence", "presence.online": "Online", "presence.away": "Away", "presence.offline": "Offline",
      "live.on": "live", "live.connecting": "connecting…", "live.reconnecting": "reconnecting…",
      "notify.off": "Notifications off", "notify.on": "Notifications on",
      "notify.denied": "The browser blocks notifications for this page.",
      "notify.unsupported": "This browser cannot show notifications.",
      "notify.assigned": "New conversation for you", "notify.message": "New message from {name}",
      "notify.mention": "{name} mentioned you",
      reports: "Reports", signout: "Sign out",
      "role.agent": "agent", "role.supervisor": "supervisor", "role.admin": "admin", "role.integration": "integration",
      "signin.title": "Sign in",
      "signin.hint": "Use your agent, supervisor or admin token (from auth.tokens in the gateway's configuration).",
      "signin.token": "Agent token", "signin.button": "Sign in", "signin.invalid": "That token is not valid.",
      "signin.not_console": "This token cannot use the console (it needs the role agent, supervisor or admin).",
      "signin.expired": "Your token is no longer accepted; sign in again.",
      "lists.title": "Conversations", "search.label": "Search",
      "search.placeholder": "Search messages and contacts", "search.results": "Search results",
      "search.none": "Nothing found.", "search.close": "Back to the list",
      "view.label": "View", "view.inbox": "My inbox", "view.mine": "Assigned to me", "view.unassigned": "Unassigned",
      "view.all": "All open", "view.resolved": "Resolved", "view.snoozed": "Snoozed",
      "filters.title": "Filters", "filters.status": "Status", "filters.queue": "Queue", "filters.channel": "Channel",
      "filters.assignee": "Assignee", "filters.tag": "Tag", "filters.sla": "SLA", "filters.sort": "Sort",
      "filters.clear": "Clear filters", "filters.any": "any", "filters.me": "me", "filters.none": "nobody",
      "sla.breached": "breached", "sla.warning": "due soon", "sla.ok": "on time",
      "sort.-last_message_at": "Newest activity", "sort.created_at": "Oldest first", "sort.-priority": "Most urgent first",
      "filters.waiting": "Waiting", "filters.unread": "Unread", "waiting.true": "customer waits", "waiting.false": "answered",
      "unread.true": "only unread", "actions.wake": "Wake up now", "done.woken": "Back in the queue.",
      "sort.sla_due": "SLA due",
      "offers.title": "Offered to you", "offers.accept": "Accept", "offers.reject": "Reject",
      "offers.expires": "expires in {n} s", "offers.expired": "expired",
      "offers.accepted": "Offer accepted: the conversation is yours.", "offers.rejected": "Offer rejected.",
      "offers.too_late": "Too late: the offer has expired or was withdrawn.",
      "mine.title": "Assigned to me", "mine.empty": "Nothing assigned to you.",
      "waiting.title": "Waiting in my queues", "waiting.empty": "No one is waiting.",
      "results.empty": "No conversations here.", "results.more": "Load more",
      "unread.label": "{n} unread", placeholder: "Select a conversation.",
      "back.list": "← Conversations", "back.conv": "← Conversation", "contact.open": "Contact details",
      "routing.why": "Why here?", "actions.label": "Conversation actions",
      "actions.take": "Assign to me", "actions.assign_to": "Assign to", "actions.assign": "Assign",
      "actions.transfer_to": "Transfer to", "actions.transfer": "Transfer", "actions.resolve": "Resolve", "actions.portal_link": "Send portal link",
      "actions.reopen": "Reopen", "actions.snooze_for": "Snooze for", "actions.snooze": "Snooze",
      "actions.priority": "Priority", "actions.add_tag": "Add tag", "actions.remove_tag": "Remove tag {tag}",
      "snooze.1h": "1 hour", "snooze.4h": "4 hours", "snooze.tomorrow": "until tomorrow 9:00",
      "snooze.week": "until Monday 9:00",
      "priority.low": "low", "priority.normal": "normal", "priority.high": "high", "priority.urgent": "urgent",
      "status.open": "open", "status.assigned": "assigned", "status.pending": "pending", "status.resolved": "resolved",
      "status.closed": "closed", "status.snoozed": "snoozed",
      "queues.group": "Queues", "agents.group": "Agents",
      "done.assigned_me": "Assigned to you.", "done.assigned": "Assigned to {name}.", "done.transferred": "Transferred to {queue}.",
      "done.resolved": "Resolved.", "done.portal_link": "Portal link sent.", "done.reopened": "Reopened.", "done.snoozed": "Snoozed until {time}.",
      "done.priority": "Priority: {p}.", "done.tag_added": "Tag {tag} added.", "done.tag_removed": "Tag {tag} removed.",
      "done.presence": "Presence: {p}", "done.note": "Note saved (not sent to the customer).",
      "done.contact_saved": "Contact saved.", "done.merged": "Merged.", "done.unmerged": "Merge undone.",
      "done.split": "{identity} is now a contact of its own.",
      "meta.queue": "queue {queue}", "meta.assigned_to": "assigned to {name}", "meta.unassigned": "unassigned",
      "meta.offered_to": "offered to {name}", "meta.escalation": "escalation step {step} of {of}",
      "meta.via": "via {channel}", "meta.unverified": "(unverified)", "meta.claims": "claims to be {address} (unverified)",
      "meta.snoozed_until": "snoozed until {time}", "meta.priority": "priority {p}",
      "viewers.viewing": "{names} viewing", "viewers.typing": "{names} typing…",
      "messages.label": "Messages", "typing.customer": "The customer is typing…",
      "msg.earlier": "Earlier conversation · {channel} · {status} · {time}", "msg.this": "This conversation · {time}", "msg.via_portal": "via the customer portal", "msg.kb_suggested": "Read first (did not help):",
      "msg.note": "Internal note", "msg.attachments": "Attachments:", "msg.system": "system",
      "msg.customer": "Customer", "msg.customer_short": "Customer …{id}",
      "state.queued": "queued", "state.sending": "sending", "state.sent": "sent", "state.delivered": "delivered",
      "state.read": "read", "state.failed": "failed",
      "reply.mode": "Reply or internal note", "reply.mode_reply": "Reply to the customer", "reply.mode_note": "Internal note",
      "reply.label": "Reply", "reply.label_note": "Internal note (agents only)",
      "reply.placeholder": "Write a reply — Enter sends, Shift+Enter for a new line, / for canned replies",
      "reply.placeholder_note": "Write a note for your team — @name mentions an agent",
      "reply.attach": "Attach files", "reply.send": "Send", "reply.send_note": "Save note",
      "reply.failed": "The reply was not sent: {error}", "canned.label": "Canned replies",
      "canned.none": "No canned reply matches.",
      "contact.title": "Contact", "contact.name": "Name", "contact.language": "Preferred language", "contact.segment": "Segment",
      "contact.new_key": "New attribute", "contact.new_value": "Value", "contact.save": "Save contact",
      "contact.identities": "Identities", "contact.conversations": "Conversations", "contact.merge": "Merge",
      "contact.merge_other": "Merge another contact into this one (contact id, email or kind:address)",
      "contact.not_found": "No contact has {identity}.", "contact.merge_button": "Merge",
      "contact.verified": "verified", "contact.unverified": "unverified", "contact.split": "Split off",
      "contact.undo": "Undo", "contact.merged_from": "{other} merged in {time}", "contact.undone": "undone {time}",
      "contact.remove_attr": "Remove {key}",
      "help.title": "Keyboard shortcuts", "help.close": "Close",
      "new.button": "New conversation", "new.title": "Start a conversation",
      "new.hint": "Write first to a customer by email, SMS or Telegram (after they wrote to the bot). The conversation is yours.",
      "new.channel": "Channel", "new.to": "To (email address, phone number in +49… form, Telegram user id)",
      "new.name": "Name (optional)", "new.subject": "Subject (email)", "new.text": "Message",
      "new.send": "Send", "new.cancel": "Cancel", "new.done": "Conversation started; the message is on its way.",
      "new.error.channel_cannot_start": "This channel cannot write first: the customer has to start the chat.",
      "new.error.template_required": "WhatsApp starts only with an approved template (use the API).",
      "new.error.subject_required": "An email needs a subject.",
      "new.error.never_wrote": "This Telegram user never wrote to the bot: a bot cannot write first.",
      "new.error.opted_out": "This contact asked not to be contacted.",
      "new.error.no_address": "This contact has no address for this channel.",
      "new.error.invalid_address": "That address is not valid for this channel.",
      "new.error.conversation_exists": "This customer already has an open conversation: reply there.",
      "new.error.unknown_channel": "This channel is not configured.",
      "new.error.wrong_address_kind": "This channel cannot reach that kind of address (an email address by SMS, say).",
      "new.error.template_not_supported": "Only WhatsApp sends templates: on this channel, write the message.",
      "new.error.unknown_contact": "This contact does not exist (any more).",
      "new.error.unknown_agent": "This agent does not exist.",
      "new.error.unknown_queue": "This queue does not exist.",
      "new.error.queue_scope": "This conversation would be in a queue you do not see, so you could not follow it. Someone who works in that queue can start it.",
      "new.error.forbidden": "You can start a conversation only for yourself.",
      "new.error.validation_error": "Please check the fields: an address and a message are needed.",
      "new.error.payload_too_large": "This message is too long.",
      "new.error.unavailable": "The gateway cannot reach its database right now; try again shortly.",
      "new.error.other": "Could not start the conversation: {error}",
      "key.j": "next conversation", "key.k": "previous conversation", "key.r": "reply",
      "key.n": "internal note", "key.e": "resolve", "key.slash": "search",
      "key.canned": "in the reply box: canned replies", "key.esc": "close, back", "key.help": "this help",
      "error.load_lists": "Could not load conversations: {error}", "error.load_conv": "Could not load the conversation: {error}",
      "error.network": "The gateway cannot be reached.", "error.presence": "Presence not changed: {error}",
    },
    de: {
      skip: "Zum Gespräch springen", subtitle: "Agenten-Konsole", language: "Sprache",
      presence: "Status", "presence.online": "Online", "presence.away": "Abwesend", "presence.offline": "Offline",
      "live.on": "live", "live.connecting": "verbinde …", "live.reconnecting": "verbinde neu …",
      "notify.off": "Benachrichtigungen aus", "notify.on": "Benachrichtigungen an",
      "notify.denied": "Der Browser blockiert Benachrichtigungen für diese Seite.",
      "notify.unsupported": "Dieser Browser kann keine Benachrichtigungen zeigen.",
      "notify.assigned": "Neues Gespräch für Sie", "notify.message": "Neue Nachricht von {name}",
      "notify.mention": "{name} hat Sie erwähnt",
      reports: "Berichte", signout: "Abmelden",
      "role.agent": "Agent", "role.supervisor": "Supervisor", "role.admin": "Admin", "role.integration": "Integration",
      "signin.title": "Anmelden",
      "signin.hint": "Mit Ihrem Agenten-, Supervisor- oder Admin-Token (aus auth.tokens in der Konfiguration des Gateways).",
      "signin.token": "Agenten-Token", "signin.button": "Anmelden", "signin.invalid": "Dieses Token ist ungültig.",
      "signin.not_console": "Mit diesem Token geht die Konsole nicht (nötig ist die Rolle Agent, Supervisor oder Admin).",
      "signin.expired": "Ihr Token gilt nicht mehr; bitte melden Sie sich neu an.",
      "lists.title": "Gespräche", "search.label": "Suche",
      "search.placeholder": "Nachrichten und Kontakte durchsuchen", "search.results": "Suchergebnisse",
      "search.none": "Nichts gefunden.", "search.close": "Zurück zur Liste",
      "view.label": "Ansicht", "view.inbox": "Mein Eingang", "view.mine": "Mir zugewiesen", "view.unassigned": "Nicht zugewiesen",
      "view.all": "Alle offenen", "view.resolved": "Gelöst", "view.snoozed": "Zurückgestellt",
      "filters.title": "Filter", "filters.status": "Status", "filters.queue": "Warteschlange", "filters.channel": "Kanal",
      "filters.assignee": "Zuständig", "filters.tag": "Schlagwort", "filters.sla": "SLA", "filters.sort": "Sortierung",
      "filters.clear": "Filter zurücksetzen", "filters.any": "alle", "filters.me": "ich", "filters.none": "niemand",
      "sla.breached": "verletzt", "sla.warning": "bald fällig", "sla.ok": "im Plan",
      "sort.-last_message_at": "Neueste Aktivität", "sort.created_at": "Älteste zuerst", "sort.-priority": "Dringendste zuerst",
      "filters.waiting": "Wartet", "filters.unread": "Ungelesen", "waiting.true": "Kunde wartet", "waiting.false": "beantwortet",
      "unread.true": "nur ungelesene", "actions.wake": "Jetzt wecken", "done.woken": "Zurück in der Warteschlange.",
      "sort.sla_due": "SLA-Frist",
      "offers.title": "Ihnen angeboten", "offers.accept": "Annehmen", "offers.reject": "Ablehnen",
      "offers.expires": "läuft ab in {n} s", "offers.expired": "abgelaufen",
      "offers.accepted": "Angebot angenommen: Das Gespräch gehört Ihnen.", "offers.rejected": "Angebot abgelehnt.",
      "offers.too_late": "Zu spät: Das Angebot ist abgelaufen oder wurde zurückgezogen.",
      "mine.title": "Mir zugewiesen", "mine.empty": "Ihnen ist nichts zugewiesen.",
      "waiting.title": "Wartend in meinen Warteschlangen", "waiting.empty": "Niemand wartet.",
      "results.empty": "Hier sind keine Gespräche.", "results.more": "Mehr laden",
      "unread.label": "{n} ungelesen", placeholder: "Wählen Sie ein Gespräch.",
      "back.list": "← Gespräche", "back.conv": "← Gespräch", "contact.open": "Kontaktdetails",
      "routing.why": "Warum hier?", "actions.label": "Aktionen für das Gespräch",
      "actions.take": "Mir zuweisen", "actions.assign_to": "Zuweisen an", "actions.assign": "Zuweisen",
      "actions.transfer_to": "Weiterleiten an", "actions.transfer": "Weiterleiten", "actions.resolve": "Lösen", "actions.portal_link": "Portal-Link senden",
      "actions.reopen": "Wieder öffnen", "actions.snooze_for": "Zurückstellen", "actions.snooze": "Zurückstellen",
      "actions.priority": "Priorität", "actions.add_tag": "Schlagwort hinzufügen", "actions.remove_tag": "Schlagwort {tag} entfernen",
      "snooze.1h": "1 Stunde", "snooze.4h": "4 Stunden", "snooze.tomorrow": "bis morgen 9:00",
      "snooze.week": "bis Montag 9:00",
      "priority.low": "niedrig", "priority.normal": "normal", "priority.high": "hoch", "priority.urgent": "dringend",
      "status.open": "offen", "status.assigned": "zugewiesen", "status.pending": "wartend", "status.resolved": "gelöst",
      "status.closed": "geschlossen", "status.snoozed": "zurückgestellt",
      "queues.group": "Warteschlangen", "agents.group": "Agenten",
      "done.assigned_me": "Ihnen zugewiesen.", "done.assigned": "{name} zugewiesen.", "done.transferred": "An {queue} weitergeleitet.",
      "done.resolved": "Gelöst.", "done.portal_link": "Portal-Link gesendet.", "done.reopened": "Wieder geöffnet.", "done.snoozed": "Zurückgestellt bis {time}.",
      "done.priority": "Priorität: {p}.", "done.tag_added": "Schlagwort {tag} hinzugefügt.", "done.tag_removed": "Schlagwort {tag} entfernt.",
      "done.presence": "Status: {p}", "done.note": "Notiz gespeichert (geht nicht an den Kunden).",
      "done.contact_saved": "Kontakt gespeichert.", "done.merged": "Zusammengeführt.", "done.unmerged": "Zusammenführung rückgängig gemacht.",
      "done.split": "{identity} ist jetzt ein eigener Kontakt.",
      "meta.queue": "Warteschlange {queue}", "meta.assigned_to": "zugewiesen an {name}", "meta.unassigned": "nicht zugewiesen",
      "meta.offered_to": "angeboten an {name}", "meta.escalation": "Eskalationsstufe {step} von {of}",
      "meta.via": "über {channel}", "meta.unverified": "(unbestätigt)", "meta.claims": "gibt sich aus als {address} (unbestätigt)",
      "meta.snoozed_until": "zurückgestellt bis {time}", "meta.priority": "Priorität {p}",
      "viewers.viewing": "{names} sieht zu", "viewers.typing": "{names} schreibt …",
      "messages.label": "Nachrichten", "typing.customer": "Der Kunde schreibt …",
      "msg.earlier": "Früheres Gespräch · {channel} · {status} · {time}", "msg.this": "Dieses Gespräch · {time}", "msg.via_portal": "über das Kundenportal", "msg.kb_suggested": "Vorher gelesen (half nicht):",
      "msg.note": "Interne Notiz", "msg.attachments": "Anhänge:", "msg.system": "System",
      "msg.customer": "Kunde", "msg.customer_short": "Kunde …{id}",
      "state.queued": "in Warteschlange", "state.sending": "wird gesendet", "state.sent": "gesendet", "state.delivered": "zugestellt",
      "state.read": "gelesen", "state.failed": "fehlgeschlagen",
      "reply.mode": "Antwort oder interne Notiz", "reply.mode_reply": "Antwort an den Kunden", "reply.mode_note": "Interne Notiz",
      "reply.label": "Antwort", "reply.label_note": "Interne Notiz (nur für Agenten)",
      "reply.placeholder": "Antwort schreiben — Enter sendet, Umschalt+Enter für eine neue Zeile, / für Textbausteine",
      "reply.placeholder_note": "Notiz für Ihr Team — @name erwähnt einen Agenten",
      "reply.attach": "Dateien anhängen", "reply.send": "Senden", "reply.send_note": "Notiz speichern",
      "reply.failed": "Die Antwort wurde nicht gesendet: {error}", "canned.label": "Textbausteine",
      "canned.none": "Kein Textbaustein passt.",
      "contact.title": "Kontakt", "contact.name": "Name", "contact.language": "Bevorzugte Sprache", "contact.segment": "Segment",
      "contact.new_key": "Neues Attribut", "contact.new_value": "Wert", "contact.save": "Kontakt speichern",
      "contact.identities": "Identitäten", "contact.conversations": "Gespräche", "contact.merge": "Zusammenführen",
      "contact.merge_other": "Einen anderen Kontakt hier hinein zusammenführen (Kontakt-ID, E-Mail oder Art:Adresse)",
      "contact.not_found": "Kein Kontakt hat {identity}.", "contact.merge_button": "Zusammenführen",
      "contact.verified": "bestätigt", "contact.unverified": "unbestätigt", "contact.split": "Abtrennen",
      "contact.undo": "Rückgängig", "contact.merged_from": "{other} zusammengeführt {time}", "contact.undone": "rückgängig gemacht {time}",
      "contact.remove_attr": "{key} entfernen",
      "help.title": "Tastenkürzel", "help.close": "Schließen",
      "new.button": "Neue Unterhaltung", "new.title": "Unterhaltung beginnen",
      "new.hint": "Schreiben Sie einem Kunden zuerst per E-Mail, SMS oder Telegram (wenn er dem Bot schon geschrieben hat). Die Unterhaltung gehört Ihnen.",
      "new.channel": "Kanal", "new.to": "An (E-Mail-Adresse, Telefonnummer im Format +49…, Telegram-Nutzer-ID)",
      "new.name": "Name (optional)", "new.subject": "Betreff (E-Mail)", "new.text": "Nachricht",
      "new.send": "Senden", "new.cancel": "Abbrechen", "new.done": "Unterhaltung begonnen; die Nachricht ist unterwegs.",
      "new.error.channel_cannot_start": "Über diesen Kanal kann man nicht zuerst schreiben: Der Kunde muss den Chat beginnen.",
      "new.error.template_required": "WhatsApp beginnt nur mit einer freigegebenen Vorlage (über die API).",
      "new.error.subject_required": "Eine E-Mail braucht einen Betreff.",
      "new.error.never_wrote": "Dieser Telegram-Nutzer hat dem Bot nie geschrieben: Ein Bot kann nicht zuerst schreiben.",
      "new.error.opted_out": "Dieser Kontakt möchte nicht kontaktiert werden.",
      "new.error.no_address": "Dieser Kontakt hat keine Adresse für diesen Kanal.",
      "new.error.invalid_address": "Diese Adresse passt nicht zu diesem Kanal.",
      "new.error.conversation_exists": "Dieser Kunde hat schon eine offene Unterhaltung: Antworten Sie dort.",
      "new.error.unknown_channel": "Dieser Kanal ist nicht eingerichtet.",
      "new.error.wrong_address_kind": "Diese Art Adresse erreicht dieser Kanal nicht (etwa eine E-Mail-Adresse per SMS).",
      "new.error.template_not_supported": "Nur WhatsApp verschickt Vorlagen: Schreiben Sie auf diesem Kanal die Nachricht.",
      "new.error.unknown_contact": "Diesen Kontakt gibt es nicht (mehr).",
      "new.error.unknown_agent": "Diesen Agenten gibt es nicht.",
      "new.error.unknown_queue": "Diese Warteschlange gibt es nicht.",
      "new.error.queue_scope": "Diese Unterhaltung käme in eine Warteschlange, die Sie nicht sehen – Sie könnten ihr nicht folgen. Jemand aus dieser Warteschlange kann sie beginnen.",
      "new.error.forbidden": "Sie können eine Unterhaltung nur für sich selbst beginnen.",
      "new.error.validation_error": "Bitte prüfen Sie die Felder: Adresse und Nachricht sind nötig.",
      "new.error.payload_too_large": "Diese Nachricht ist zu lang.",
      "new.error.unavailable": "Das Gateway erreicht seine Datenbank gerade nicht; versuchen Sie es gleich noch einmal.",
      "new.error.other": "Die Unterhaltung konnte nicht begonnen werden: {error}",
      "key.j": "nächstes Gespräch", "key.k": "vorheriges Gespräch", "key.r": "antworten",
      "key.n": "interne Notiz", "key.e": "lösen", "key.slash": "suchen",
      "key.canned": "im Antwortfeld: Textbausteine", "key.esc": "schließen, zurück", "key.help": "diese Hilfe",
      "error.load_lists": "Gespräche konnten nicht geladen werden: {error}", "error.load_conv": "Das Gespräch konnte nicht geladen werden: {error}",
      "error.network": "Das Gateway ist nicht erreichbar.", "error.presence": "Status nicht geändert: {error}",
    },
  };

  function fromBrowser() {
    const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
    for (const l of langs) {
      const base = String(l).toLowerCase().slice(0, 2);
      if (TEXT[base]) return base;
    }
    return "en";
  }

  let lang = null;
  try { lang = localStorage.getItem(LANG_KEY); } catch (e) { lang = null; }
  if (!TEXT[lang]) lang = fromBrowser();

  /** The BCP 47 tag for Intl: the browser's own regional variant when it is of this language. */
  function locale() {
    const own = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ""];
    const match = own.find((l) => String(l).toLowerCase().slice(0, 2) === lang);
    return match || (lang === "de" ? "de-DE" : "en-GB");
  }

  function t(key, params) {
    let text = (TEXT[lang] && TEXT[lang][key]) || TEXT.en[key];
    if (text == null) return key;
    if (params) text = text.replace(/\{(\w+)\}/g, (m, k) => (params[k] != null ? String(params[k]) : m));
    return text;
  }

  function apply(root) {
    const scope = root || document;
    for (const node of scope.querySelectorAll("[data-i18n]")) node.textContent = t(node.getAttribute("data-i18n"));
    for (const node of scope.querySelectorAll("[data-i18n-placeholder]")) {
      node.setAttribute("placeholder", t(node.getAttribute("data-i18n-placeholder")));
    }
    for (const node of scope.querySelectorAll("[data-i18n-aria-label]")) {
      node.setAttribute("aria-label", t(node.getAttribute("data-i18n-aria-label")));
    }
    document.documentElement.lang = lang;
  }

  function setLang(value) {
    if (!TEXT[value]) return;
    lang = value;
    try { localStorage.setItem(LANG_KEY, value); } catch (e) { /* private mode */ }
    apply();
  }

  function parse(iso) {
    if (!iso) return null;
    const d = typeof iso === "number" ? new Date(iso * 1000) : new Date(iso);
    return isNaN(d.getTime()) ? null : d;
  }

  /** A time today ("14:05"), otherwise date and time, in the agent's zone. */
  function when(iso) {
    const d = parse(iso);
    if (!d) return "";
    const today = new Date().toDateString() === d.toDateString();
    const opts = today ? { hour: "2-digit", minute: "2-digit" } : { dateStyle: "short", timeStyle: "short" };
    return new Intl.DateTimeFormat(locale(), opts).format(d);
  }

  function full(iso) {
    const d = parse(iso);
    return d ? new Intl.DateTimeFormat(locale(), { dateStyle: "full", timeStyle: "long" }).format(d) : "";
  }

  /** "5 minutes ago" / "vor 5 Minuten". */
  function relative(iso) {
    const d = parse(iso);
    if (!d) return "";
    const secs = Math.round((d.getTime() - Date.now()) / 1000);
    const abs = Math.abs(secs);
    const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "auto" });
    if (abs < 45) return rtf.format(0, "second");
    if (abs < 3600) return rtf.format(Math.round(secs / 60), "minute");
    if (abs < 86400) return rtf.format(Math.round(secs / 3600), "hour");
    if (abs < 7 * 86400) return rtf.format(Math.round(secs / 86400), "day");
    return when(iso);
  }

  function list(items) {
    try { return new Intl.ListFormat(locale(), { style: "long", type: "conjunction" }).format(items); }
    catch (e) { return items.join(", "); }
  }

  window.SwitchboardI18n = {
    t, apply, setLang, when, full, relative, list, locale,
    lang: () => lang, languages: Object.keys(TEXT), catalog: TEXT,
  };
})();
