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
]
