"""Versioned schema migrations for the SQLite store (`PRAGMA user_version`).

Append a new `(version, script)` pair for every change; never edit a released one.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE contacts (
    id TEXT PRIMARY KEY,
    name TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    merged_into TEXT REFERENCES contacts(id),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE identities (
    kind TEXT NOT NULL,
    address TEXT NOT NULL,
    contact_id TEXT NOT NULL REFERENCES contacts(id),
    PRIMARY KEY (kind, address)
);
CREATE INDEX identities_contact ON identities(contact_id);
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    contact_id TEXT NOT NULL REFERENCES contacts(id),
    channel TEXT NOT NULL,
    channel_kind TEXT NOT NULL,
    last_channel TEXT NOT NULL,
    status TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    assignee TEXT,
    required_skills TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    subject TEXT,
    thread_token TEXT UNIQUE,
    reply_kind TEXT,
    reply_address TEXT,
    routing TEXT NOT NULL DEFAULT '{}',
    assigned_at REAL,
    first_response_at REAL,
    resolved_at REAL,
    last_inbound_at REAL
);
CREATE INDEX conversations_contact ON conversations(contact_id, status);
CREATE INDEX conversations_waiting ON conversations(status, assignee);
CREATE INDEX conversations_assignee ON conversations(assignee, channel_kind, status);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    direction TEXT NOT NULL,
    channel TEXT NOT NULL,
    sender_type TEXT NOT NULL,
    sender_id TEXT,
    text TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    html TEXT,
    subject TEXT,
    attachments TEXT NOT NULL DEFAULT '[]',
    external_id TEXT,
    provider_message_id TEXT,
    status TEXT,
    reason TEXT,
    automated INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}',
    raw_blob TEXT
);
CREATE UNIQUE INDEX messages_external ON messages(channel, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX messages_provider ON messages(provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX messages_conversation ON messages(conversation_id, created_at);
CREATE TABLE edits (
    channel TEXT NOT NULL,
    external_id TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(id),
    at REAL NOT NULL,
    PRIMARY KEY (channel, external_id)
);
CREATE TABLE outbox (
    message_id TEXT PRIMARY KEY REFERENCES messages(id),
    channel TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until REAL,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox(next_attempt_at);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    presence TEXT NOT NULL,
    capacity TEXT NOT NULL,
    last_assigned_at REAL
);
CREATE TABLE queue_cursors (
    queue TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE blobs (
    id TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
)
""",
    ),
    (
        2,
        """
CREATE TABLE agent_load (
    agent_id TEXT NOT NULL,
    channel_kind TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (agent_id, channel_kind)
);
INSERT INTO agent_load(agent_id, channel_kind, n)
    SELECT assignee, channel_kind, COUNT(*) FROM conversations
    WHERE assignee IS NOT NULL AND status IN ('assigned', 'pending')
    GROUP BY assignee, channel_kind
""",
    ),
    (
        3,
        """
ALTER TABLE outbox ADD COLUMN to_kind TEXT;
ALTER TABLE outbox ADD COLUMN to_address TEXT;
UPDATE outbox SET
    to_kind = (SELECT c.reply_kind FROM messages m JOIN conversations c ON c.id = m.conversation_id
               WHERE m.id = outbox.message_id),
    to_address = (SELECT c.reply_address FROM messages m JOIN conversations c
                  ON c.id = m.conversation_id WHERE m.id = outbox.message_id)
""",
    ),
    (
        4,
        """
CREATE TABLE early_receipts (
    channel TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (channel, provider_message_id, status)
)
""",
    ),
    (
        5,
        """
ALTER TABLE identities ADD COLUMN verified INTEGER NOT NULL DEFAULT 1
""",
    ),
    (
        6,
        """
CREATE TABLE quarantine (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL,
    external_id TEXT,
    reason TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'retried', 'dismissed')),
    retries INTEGER NOT NULL DEFAULT 0,
    message_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX quarantine_status ON quarantine(status, channel)
""",
    ),
    (
        7,
        """
CREATE TABLE claims (
    contact_id TEXT NOT NULL REFERENCES contacts(id),
    kind TEXT NOT NULL,
    address TEXT NOT NULL,
    channel TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (contact_id, kind, address)
);
CREATE TABLE merges (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL REFERENCES contacts(id),
    target TEXT NOT NULL REFERENCES contacts(id),
    identity_kind TEXT NOT NULL,
    identity_address TEXT NOT NULL,
    conversations TEXT NOT NULL,
    at REAL NOT NULL,
    undone_at REAL
);
CREATE INDEX merges_source ON merges(source);
-- Before claims existed, a typed email was linked as an unverified identity, and a chat
-- visitor who typed a known email was linked (unverified) to that customer. A typed address
-- becomes a claim of the contact it was typed for; a visitor linked only by a claim loses
-- the link and is a contact of its own again when it next writes.
INSERT OR IGNORE INTO claims(contact_id, kind, address, channel, created_at)
    SELECT contact_id, kind, address, '', 0 FROM identities WHERE verified = 0 AND kind = 'email';
-- A conversation a claimant re-pointed at itself answers its own customer again.
UPDATE conversations SET
    last_channel = channel,
    reply_kind = COALESCE(
        (SELECT i.kind FROM identities i WHERE i.contact_id = conversations.contact_id
         AND i.verified = 1 AND i.kind = conversations.channel_kind ORDER BY i.address LIMIT 1),
        (SELECT i.kind FROM identities i WHERE i.contact_id = conversations.contact_id
         AND i.verified = 1 ORDER BY i.kind, i.address LIMIT 1)),
    reply_address = COALESCE(
        (SELECT i.address FROM identities i WHERE i.contact_id = conversations.contact_id
         AND i.verified = 1 AND i.kind = conversations.channel_kind ORDER BY i.address LIMIT 1),
        (SELECT i.address FROM identities i WHERE i.contact_id = conversations.contact_id
         AND i.verified = 1 ORDER BY i.kind, i.address LIMIT 1))
WHERE EXISTS (SELECT 1 FROM identities u WHERE u.verified = 0 AND u.kind = conversations.reply_kind
              AND u.address = conversations.reply_address);
DELETE FROM identities WHERE verified = 0
""",
    ),
    (
        8,
        """
-- Routing reads the waiting conversations of one channel kind, queue and set of required
-- skills, most urgent and oldest first, a page at a time: this index makes that a range
-- read, and listing the groups one seek per group, whatever the backlog.
CREATE INDEX conversations_routable
    ON conversations(channel_kind, queue, required_skills, priority DESC, created_at, id)
    WHERE status = 'open' AND assignee IS NULL
""",
    ),
    (
        9,
        """
-- Retention removes the events committed before a cutoff (gateway/eventlog.py).
CREATE INDEX events_at ON events(at)
""",
    ),
    (
        10,
        """
-- `GET /v1/conversations` filters on one of these columns and pages newest first by id
-- (`id < cursor ORDER BY id DESC`): each index makes a filtered page a range read in
-- order, with no scan (a channel filter read the whole table) and no sort.
CREATE INDEX conversations_list_status ON conversations(status, id);
CREATE INDEX conversations_list_queue ON conversations(queue, id);
CREATE INDEX conversations_list_assignee ON conversations(assignee, id);
CREATE INDEX conversations_list_channel ON conversations(last_channel, id);
CREATE INDEX conversations_list_contact ON conversations(contact_id, id)
""",
    ),
    (
        11,
        """
-- The invariants the store relies on, kept by the database itself, not only by the habit
-- of a single writer (a second process, later a second host, writes the same tables).
--
-- One active conversation per contact: a message joins its contact's active conversation
-- (gateway/domain/threading.py), so there is never a second one opened for the same
-- contact. `opened_for` is the contact a conversation was opened for; a merge moves the
-- merged contact's conversations to the contact it joined without changing it, so they
-- stay apart (and go back on unmerge).
ALTER TABLE conversations ADD COLUMN opened_for TEXT;
UPDATE conversations SET opened_for = COALESCE(
    (SELECT m.source FROM merges m, json_each(m.conversations) j
     WHERE j.value = conversations.id AND m.undone_at IS NULL ORDER BY m.at DESC LIMIT 1),
    contact_id);
-- A store written before this version may hold more than one (a reopen by hand): the most
-- recently updated keeps the rule, the older ones are left as they are, outside it.
UPDATE conversations SET opened_for = NULL
WHERE status IN ('open', 'assigned', 'pending') AND opened_for = contact_id
    AND EXISTS (SELECT 1 FROM conversations o WHERE o.contact_id = conversations.contact_id
        AND o.opened_for = o.contact_id AND o.status IN ('open', 'assigned', 'pending')
        AND (o.updated_at > conversations.updated_at
             OR (o.updated_at = conversations.updated_at AND o.id > conversations.id)));
CREATE UNIQUE INDEX conversations_one_active ON conversations(contact_id)
    WHERE status IN ('open', 'assigned', 'pending') AND opened_for = contact_id;
-- One message per (channel, external id): `messages_external` (version 1).
--
-- A router's claim never takes an agent over the capacity the agent has when the claim
-- commits: `claimed` marks an assignment made by the router (a manual one may be forced
-- over capacity), and the trigger compares the agent's load for the conversation's
-- channel kind with its capacity (the kind's own entry, else `default`, else 0) as they
-- are inside the claiming transaction.
ALTER TABLE conversations ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER conversations_claim_within_capacity
BEFORE UPDATE OF assignee, claimed ON conversations
WHEN NEW.claimed = 1 AND NEW.assignee IS NOT NULL AND NEW.status IN ('assigned', 'pending')
    AND (OLD.assignee IS NOT NEW.assignee OR OLD.claimed = 0)
BEGIN
    SELECT RAISE(ABORT, 'claim over the agent''s capacity')
    WHERE COALESCE((SELECT n FROM agent_load
                    WHERE agent_id = NEW.assignee AND channel_kind = NEW.channel_kind), 0)
        >= COALESCE((SELECT COALESCE(json_extract(capacity, '$."' || NEW.channel_kind || '"'),
                                     json_extract(capacity, '$.default'))
                     FROM agents WHERE id = NEW.assignee), 0); END
""",
    ),
    (
        12,
        """
-- Business hours and SLAs (issue 12). The SLA clocks of a conversation: its policy, each
-- target's due time (JSON, as the API shows it), what has fired (warnings, breaches) and
-- the earliest warning or breach still to fire (`next_at`, what the timer loop reads).
CREATE TABLE sla (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
    policy TEXT NOT NULL,
    targets TEXT NOT NULL,
    fired TEXT NOT NULL DEFAULT '{}',
    next_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX sla_next ON sla(next_at) WHERE next_at IS NOT NULL;
-- How far the SLA clocks have read the event log (what changed since is recomputed).
CREATE TABLE sla_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), event_id INTEGER NOT NULL);
INSERT INTO sla_cursor(id, event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events;
-- The nearest due time of a conversation's running SLA targets (1e18: none), for the
-- routing order `sla`: highest priority, nearest breach, oldest — read in index order.
ALTER TABLE conversations ADD COLUMN sla_due REAL NOT NULL DEFAULT 1e18;
CREATE INDEX conversations_routable_sla
    ON conversations(channel_kind, queue, required_skills, priority DESC, sla_due, created_at, id)
    WHERE status = 'open' AND assignee IS NULL;
-- Automatic notices a conversation got once (out of hours, a long wait).
CREATE TABLE notices (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (conversation_id, kind)
)
""",
    ),
    (
        13,
        """
-- Escalation, offers, reassignment, sticky routing and the offline policy (issue 12).
-- Deadlines are data: these tables hold the stamps the timers read, and the triggers
-- below keep them in the same transaction as the change they follow, keyed on the events
-- every change appends, so no code path can forget them and a kill -9 loses nothing.
--
-- waits: when a conversation started waiting (created, reopened, transferred, requeued)
-- and the escalation step it reached; `due` is the next step, set by the escalation timer
-- (state new → scheduled; idle once assigned or when nothing more is due).
CREATE TABLE waits (
    conversation_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    since REAL NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    due REAL
);
CREATE INDEX waits_new ON waits(conversation_id) WHERE state = 'new';
CREATE INDEX waits_due ON waits(due) WHERE state = 'scheduled';
-- An offer of a conversation to one agent; a pending one holds a unit of the agent's
-- capacity (agent_load) until it is accepted (it becomes the assignment's), rejected,
-- expired or withdrawn (the conversation was assigned, moved or resolved meanwhile).
CREATE TABLE offers (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    channel_kind TEXT NOT NULL,
    queue TEXT NOT NULL,
    strategy TEXT NOT NULL,
    reasons TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    answered_at REAL
);
CREATE UNIQUE INDEX offers_pending_conversation ON offers(conversation_id) WHERE status = 'pending';
CREATE INDEX offers_pending_due ON offers(expires_at) WHERE status = 'pending';
CREATE INDEX offers_agent ON offers(agent_id, status);
-- Agents who declined a conversation (rejected, let an offer time out) or lost it (no
-- reply, offline): routing skips them for it for `routing.skip_declined_for`.
CREATE TABLE declines (
    conversation_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (conversation_id, agent_id)
);
-- The last agent reply of each conversation (no-reply reassignment, sticky routing).
CREATE TABLE agent_replies (
    conversation_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    at REAL NOT NULL
);
-- Since when each agent has its current presence (the offline grace period).
CREATE TABLE presence_stamps (
    agent_id TEXT PRIMARY KEY,
    presence TEXT NOT NULL,
    since REAL NOT NULL
);
-- One trigger on the events table (each trigger costs a subprogram call per event, and
-- most events are none of these): a conversation starts waiting; is assigned (its wait
-- ends); is assigned, moved or resolved while offered (the offer is withdrawn, its unit of
-- capacity given back); an agent's presence changes (since when); an agent replies.
CREATE TRIGGER stamps AFTER INSERT ON events
WHEN NEW.type IN ('conversation.created', 'conversation.reopened', 'conversation.transferred', 'conversation.requeued', 'conversation.assigned', 'conversation.resolved', 'agent.presence', 'message.queued')
BEGIN INSERT OR REPLACE INTO agent_replies(conversation_id, agent_id, at) SELECT conversation_id, sender_id, created_at FROM messages WHERE NEW.type = 'message.queued' AND id = json_extract(NEW.data, '$.message_id') AND sender_type = 'agent' AND sender_id IS NOT NULL; INSERT OR REPLACE INTO waits(conversation_id, reason, since, step, state, due) SELECT COALESCE(json_extract(NEW.data, '$.conversation_id'), json_extract(NEW.data, '$.conversation.id')), substr(NEW.type, 14), NEW.at, 0, 'new', NULL WHERE NEW.type IN ('conversation.created', 'conversation.reopened', 'conversation.transferred', 'conversation.requeued'); UPDATE waits SET state = 'idle', due = NULL WHERE NEW.type = 'conversation.assigned' AND conversation_id = json_extract(NEW.data, '$.conversation_id'); UPDATE agent_load SET n = n - 1 WHERE NEW.type IN ('conversation.assigned', 'conversation.transferred', 'conversation.resolved', 'conversation.requeued') AND EXISTS (SELECT 1 FROM offers o WHERE o.conversation_id = json_extract(NEW.data, '$.conversation_id') AND o.status = 'pending' AND o.agent_id = agent_load.agent_id AND o.channel_kind = agent_load.channel_kind); UPDATE offers SET status = 'withdrawn', answered_at = NEW.at WHERE NEW.type IN ('conversation.assigned', 'conversation.transferred', 'conversation.resolved', 'conversation.requeued') AND conversation_id = json_extract(NEW.data, '$.conversation_id') AND status = 'pending'; INSERT OR REPLACE INTO presence_stamps(agent_id, presence, since) SELECT json_extract(NEW.data, '$.agent'), json_extract(NEW.data, '$.status'), NEW.at WHERE NEW.type = 'agent.presence' AND NOT EXISTS (SELECT 1 FROM presence_stamps WHERE agent_id = json_extract(NEW.data, '$.agent') AND presence = json_extract(NEW.data, '$.status')); END;
INSERT INTO waits(conversation_id, reason, since, step, state)
    SELECT id, 'created', updated_at, 0, 'new' FROM conversations
    WHERE status = 'open' AND assignee IS NULL;
INSERT OR REPLACE INTO agent_replies(conversation_id, agent_id, at)
    SELECT conversation_id, sender_id, MAX(created_at) FROM messages
    WHERE direction = 'out' AND sender_type = 'agent' AND sender_id IS NOT NULL
    GROUP BY conversation_id;
INSERT INTO presence_stamps(agent_id, presence, since)
    SELECT id, presence, CAST(strftime('%s', 'now') AS REAL) FROM agents
""",
    ),
    (
        14,
        """
-- KPI rollups (gateway/kpis/figures.py), folded from the event log by `SqliteStats.stats_fold`.
-- One row per conversation: what the fold needs to know between events.
CREATE TABLE kpi_conversations (
    conversation_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    queue TEXT NOT NULL,
    agent TEXT,
    created_at REAL NOT NULL,
    cycle_started_at REAL NOT NULL,
    assigned_at REAL,
    first_response_at REAL,
    first_resolved_at REAL,
    replies INTEGER NOT NULL DEFAULT 0,
    reopens INTEGER NOT NULL DEFAULT 0,
    wait_started_at REAL,
    awaiting REAL NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX kpi_conversations_active ON kpi_conversations(queue, agent) WHERE active = 1;
-- One row per fact (a message, a response, a resolution ...), clustered by (kind, at): a
-- period of one kind is one range read, and its count a count of the key range; `seq`
-- keeps facts of one instant apart. A resolution carries its cycle's start (`start`), its
-- assignment (`start2`) and the seconds the customer waited for an agent (`value`).
CREATE TABLE kpi_facts (
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    seq INTEGER NOT NULL,
    start REAL,
    start2 REAL,
    value REAL,
    conversation_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    queue TEXT NOT NULL,
    agent TEXT,
    PRIMARY KEY (kind, at, seq)
) WITHOUT ROWID;
-- Counting one channel's, queue's or agent's facts of a period is a range of one of these.
CREATE INDEX kpi_facts_channel ON kpi_facts(kind, channel, at);
CREATE INDEX kpi_facts_queue ON kpi_facts(kind, queue, at);
CREATE INDEX kpi_facts_agent ON kpi_facts(kind, agent, at);
-- Facts counted per 15-minute slot (every zone's offset is a multiple of 15 minutes): the
-- counts of local days and hours without reading the facts.
CREATE TABLE kpi_slots (
    kind TEXT NOT NULL,
    slot INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (kind, slot)
) WITHOUT ROWID;
-- The channels, queues and agents that facts name (a group per value).
CREATE TABLE kpi_keys (
    dim TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (dim, value)
) WITHOUT ROWID
""",
    ),
    (
        15,
        """
-- Customer surveys (gateway/surveys/). One row per question sent; `score` stays NULL until
-- the customer answers. Read by the KPIs (/v1/stats, Prometheus, CSV): keep these columns.
CREATE TABLE survey_responses (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL CHECK(kind IN ('csat','nps','ces')),
    score INTEGER,
    comment TEXT,
    agent_id TEXT,
    queue TEXT NOT NULL,
    sent_at REAL NOT NULL,
    answered_at REAL,
    language TEXT NOT NULL,
    message_id TEXT,
    resolved_at REAL NOT NULL,
    answer_channel TEXT,
    answer_external_id TEXT,
    commented_at REAL
);
CREATE INDEX survey_responses_contact ON survey_responses(contact_id, kind, sent_at);
CREATE INDEX survey_responses_sent ON survey_responses(sent_at);
CREATE INDEX survey_responses_answered ON survey_responses(answered_at)
    WHERE answered_at IS NOT NULL;
CREATE INDEX survey_responses_conversation ON survey_responses(conversation_id);
CREATE UNIQUE INDEX survey_responses_answer ON survey_responses(answer_channel, answer_external_id)
    WHERE answer_external_id IS NOT NULL;
-- One decision per resolution (sent, or why not): the conditional insert that makes a survey
-- go out once, whoever fires, and that a restart finds already made.
CREATE TABLE survey_decisions (
    conversation_id TEXT NOT NULL,
    resolved_at REAL NOT NULL,
    decided_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    response_id TEXT,
    PRIMARY KEY (conversation_id, resolved_at)
);
CREATE TABLE survey_optouts (
    contact_id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    via TEXT NOT NULL
);
-- The survey timer reads the resolutions due, oldest first.
CREATE INDEX conversations_resolved_at ON conversations(resolved_at) WHERE status = 'resolved'
""",
    ),
    (
        16,
        """
-- KPIs (issue 13): business seconds of first/next response and resolution facts (the
-- queue's open time between the two stamps), and each SLA target's outcome as the fold
-- decided it (first decision wins: met, or breached). `since`: 0 for first response and
-- resolution, the start of the customer's wait for a next response.
ALTER TABLE kpi_facts ADD COLUMN business REAL;
CREATE TABLE kpi_sla (
    conversation_id TEXT NOT NULL,
    target TEXT NOT NULL,
    since REAL NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (conversation_id, target, since)
) WITHOUT ROWID;
-- Daily histograms of the timed figures (gateway/kpis/figures.py HIST_*): per figure, in
-- total (dim '') and per channel, queue and agent (key '' : none), per UTC day (`day` >= 0)
-- and per UTC week (`day` = -1 - week) and bin, the count, sum, smallest and largest sample. The fold fills them (and, once, from the facts
-- folded before this migration); a month's percentiles read these, not every sample.
CREATE TABLE kpi_hist (
    kind TEXT NOT NULL,
    dim TEXT NOT NULL,
    key TEXT NOT NULL,
    day INTEGER NOT NULL,
    bin INTEGER NOT NULL,
    n INTEGER NOT NULL,
    total REAL NOT NULL,
    lo REAL NOT NULL,
    hi REAL NOT NULL,
    PRIMARY KEY (kind, dim, day, key, bin)
) WITHOUT ROWID
""",
    ),
    (
        17,
        """
-- The agent workspace (issue 14). When a conversation last had a message (the list's sort
-- `last_message_at`), kept by a trigger on every message written.
ALTER TABLE conversations ADD COLUMN last_message_at REAL;
UPDATE conversations SET last_message_at =
    (SELECT MAX(m.created_at) FROM messages m WHERE m.conversation_id = conversations.id);
CREATE TRIGGER conversations_last_message AFTER INSERT ON messages BEGIN UPDATE conversations SET last_message_at = MAX(COALESCE(last_message_at, 0), new.created_at) WHERE id = new.conversation_id; END;
-- The list's sorts, read in index order.
CREATE INDEX conversations_ws_last ON conversations(COALESCE(last_message_at, created_at), id);
CREATE INDEX conversations_ws_created ON conversations(created_at, id);
CREATE INDEX conversations_ws_priority ON conversations(priority, id);
CREATE INDEX conversations_ws_sla ON conversations(sla_due, id);
-- Read markers: up to when each reader (an agent, or a token) has read a conversation.
CREATE TABLE read_markers (
    reader TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    read_at REAL NOT NULL,
    message_id TEXT,
    PRIMARY KEY (reader, conversation_id)
) WITHOUT ROWID;
-- Snoozed conversations (status pending) and when they wake.
CREATE TABLE snoozes (
    conversation_id TEXT PRIMARY KEY,
    until REAL NOT NULL,
    at REAL NOT NULL,
    by TEXT
);
CREATE INDEX snoozes_until ON snoozes(until);
-- Full-text search: message text and subjects (an external-content index over `messages`,
-- verification codes never in it), contact names and identities.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text, subject, content='messages', content_rowid='rowid',
    tokenize='unicode61 remove_diacritics 2'
);
INSERT INTO messages_fts(rowid, text, subject)
    SELECT rowid, text, subject FROM messages WHERE instr(metadata, '"verification"') = 0;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN instr(new.metadata, '"verification"') = 0 BEGIN INSERT INTO messages_fts(rowid, text, subject) VALUES (new.rowid, new.text, new.subject); END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN instr(old.metadata, '"verification"') = 0 BEGIN INSERT INTO messages_fts(messages_fts, rowid, text, subject) VALUES ('delete', old.rowid, old.text, old.subject); END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text, subject ON messages WHEN instr(old.metadata, '"verification"') = 0 BEGIN INSERT INTO messages_fts(messages_fts, rowid, text, subject) VALUES ('delete', old.rowid, old.text, old.subject); INSERT INTO messages_fts(rowid, text, subject) VALUES (new.rowid, new.text, new.subject); END;
CREATE VIRTUAL TABLE contacts_fts USING fts5(
    name, identities, tokenize='unicode61 remove_diacritics 2'
);
INSERT INTO contacts_fts(rowid, name, identities)
    SELECT c.rowid, c.name, (SELECT group_concat(i.address, ' ') FROM identities i
    WHERE i.contact_id = c.id) FROM contacts c;
CREATE TRIGGER contacts_fts_insert AFTER INSERT ON contacts BEGIN INSERT INTO contacts_fts(rowid, name, identities) VALUES (new.rowid, new.name, ''); END;
CREATE TRIGGER contacts_fts_update AFTER UPDATE OF name ON contacts BEGIN UPDATE contacts_fts SET name = new.name WHERE rowid = new.rowid; END;
CREATE TRIGGER contacts_fts_identity_insert AFTER INSERT ON identities BEGIN UPDATE contacts_fts SET identities = (SELECT group_concat(i.address, ' ') FROM identities i WHERE i.contact_id = new.contact_id) WHERE rowid = (SELECT rowid FROM contacts WHERE id = new.contact_id); END;
CREATE TRIGGER contacts_fts_identity_update AFTER UPDATE ON identities BEGIN UPDATE contacts_fts SET identities = (SELECT group_concat(i.address, ' ') FROM identities i WHERE i.contact_id = old.contact_id) WHERE rowid = (SELECT rowid FROM contacts WHERE id = old.contact_id); UPDATE contacts_fts SET identities = (SELECT group_concat(i.address, ' ') FROM identities i WHERE i.contact_id = new.contact_id) WHERE rowid = (SELECT rowid FROM contacts WHERE id = new.contact_id); END;
CREATE TRIGGER contacts_fts_identity_delete AFTER DELETE ON identities BEGIN UPDATE contacts_fts SET identities = (SELECT group_concat(i.address, ' ') FROM identities i WHERE i.contact_id = old.contact_id) WHERE rowid = (SELECT rowid FROM contacts WHERE id = old.contact_id); END
""",
    ),
    (
        18,
        """
-- The agent workspace (issue 14; gateway/store/workspace.py). Internal notes: a table of
-- their own, so nothing that reads messages (outbox, widget history, SLA, KPIs) sees one.
CREATE TABLE notes (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    sender_type TEXT NOT NULL,
    sender_id TEXT,
    text TEXT NOT NULL,
    mentions TEXT NOT NULL DEFAULT '[]',
    attachments TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL
);
CREATE INDEX notes_conversation ON notes(conversation_id, created_at);
-- Canned replies made through the API (those of the config file are not stored). `owner`:
-- the agent of a personal reply, '' for a team one; a shortcut is unique per owner.
CREATE TABLE canned_replies (
    id TEXT PRIMARY KEY,
    shortcut TEXT NOT NULL,
    title TEXT NOT NULL,
    texts TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('team', 'personal')),
    queues TEXT NOT NULL DEFAULT '[]',
    agent TEXT,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (owner, shortcut)
);
-- Who merged two contacts by hand (NULL: a verification); such a merge has no identity.
ALTER TABLE merges ADD COLUMN by_whom TEXT;
CREATE INDEX merges_target ON merges(target, at)
""",
    ),
    (
        19,
        """
-- Issue 11: lease rows with fencing tokens (gateway/store/leaserows.py).
CREATE TABLE coord_leases (
    name TEXT PRIMARY KEY,
    holder TEXT,
    token INTEGER NOT NULL DEFAULT 0,
    expires_at REAL NOT NULL DEFAULT 0
)
""",
    ),
    (
        20,
        """
-- Issue 15: the conversations a bot has (queue 'bot', status 'open'), read by the bot
-- stage's idle timer and its restart recovery, without the ones it resolved long ago.
CREATE INDEX conversations_list_queue_status ON conversations(queue, status, id)
""",
    ),
    (
        21,
        """
-- Issue 15: the customer portal (gateway/portal/). Every portal link carries its contact's
-- epoch; revoking the contact's links bumps it.
ALTER TABLE contacts ADD COLUMN portal_epoch INTEGER NOT NULL DEFAULT 0
""",
    ),
    (
        22,
        """
-- KPIs (issue 13): every timed figure's samples packed as arrays of little-endian 8-byte
-- floats (gateway/kpis/samples.py), appended to by the fold: dim '' per 15-minute slot
-- (`span` = at // 900), dim 'agent' per agent (key '': none) and UTC day (`span` = at //
-- 86400). The exact percentiles by agent, local day and hour read these rows (a few hundred
-- samples each), not a row per sample. Filled from the facts folded before this migration
-- by the next fold. Rows of a few hundred bytes to kilobytes: a rowid table.
CREATE TABLE kpi_samples (
    kind TEXT NOT NULL,
    dim TEXT NOT NULL,
    key TEXT NOT NULL,
    span INTEGER NOT NULL,
    samples BLOB NOT NULL,
    PRIMARY KEY (kind, dim, span, key)
);
-- By agent the histograms are neither read nor kept any more (the samples above are): most
-- of kpi_hist's rows (an agent's few hundred samples a week spread over as many bins).
DELETE FROM kpi_hist WHERE dim = 'agent';
-- Facts counted per kind, agent (key '': none) and UTC day: the counts by agent of a
-- period's whole days without a count of an index range per agent and kind. Filled here
-- from the facts folded so far, then by the fold.
CREATE TABLE kpi_agent_days (
    day INTEGER NOT NULL,
    kind TEXT NOT NULL,
    agent TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (day, kind, agent)
) WITHOUT ROWID;
INSERT INTO kpi_agent_days(day, kind, agent, n)
    SELECT CAST(at / 86400 AS INTEGER), kind, COALESCE(agent, ''), COUNT(*) FROM kpi_facts
    GROUP BY 1, 2, 3
""",
    ),
    (
        23,
        """
-- The bot stage's turn of a conversation (gateway/bots/stage.py): the instance holding the
-- row runs the conversation's bot turn until `until` (this host's clock); deleted when the
-- turn ends, so only a turn under way (or cut off by a crash) has a row.
CREATE TABLE bot_turns (
    conversation_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until REAL NOT NULL
) WITHOUT ROWID
""",
    ),
]
