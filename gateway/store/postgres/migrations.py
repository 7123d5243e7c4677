"""Versioned schema migrations of the PostgreSQL store.

Append a new `(version, script)` pair for every change; never edit a released one. They are
applied by `pool.migrate` in one transaction holding a transaction-scoped advisory lock, so
several instances starting together against an empty database migrate once: one applies
them, the others wait on the lock and then find nothing left to do.

Text columns that are sorted or compared as keys (ids, queues, identities) use the "C"
collation: the same byte order as SQLite's, whatever the database's locale.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE contacts (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    merged_into TEXT COLLATE "C" REFERENCES contacts(id),
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE identities (
    kind TEXT COLLATE "C" NOT NULL,
    address TEXT COLLATE "C" NOT NULL,
    contact_id TEXT COLLATE "C" NOT NULL REFERENCES contacts(id),
    verified BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (kind, address)
);
CREATE INDEX identities_contact ON identities(contact_id);
CREATE TABLE claims (
    contact_id TEXT COLLATE "C" NOT NULL REFERENCES contacts(id),
    kind TEXT COLLATE "C" NOT NULL,
    address TEXT COLLATE "C" NOT NULL,
    channel TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (contact_id, kind, address)
);
CREATE TABLE merges (
    id TEXT COLLATE "C" PRIMARY KEY,
    source TEXT COLLATE "C" NOT NULL REFERENCES contacts(id),
    target TEXT COLLATE "C" NOT NULL REFERENCES contacts(id),
    identity_kind TEXT NOT NULL,
    identity_address TEXT NOT NULL,
    conversations TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    undone_at DOUBLE PRECISION
);
CREATE INDEX merges_source ON merges(source);
CREATE TABLE conversations (
    id TEXT COLLATE "C" PRIMARY KEY,
    contact_id TEXT COLLATE "C" NOT NULL REFERENCES contacts(id),
    channel TEXT COLLATE "C" NOT NULL,
    channel_kind TEXT COLLATE "C" NOT NULL,
    last_channel TEXT COLLATE "C" NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('open', 'assigned', 'pending', 'resolved', 'closed')),
    queue TEXT COLLATE "C" NOT NULL,
    priority INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    assignee TEXT COLLATE "C",
    required_skills TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    subject TEXT,
    thread_token TEXT UNIQUE,
    reply_kind TEXT,
    reply_address TEXT,
    routing TEXT NOT NULL DEFAULT '{}',
    assigned_at DOUBLE PRECISION,
    first_response_at DOUBLE PRECISION,
    resolved_at DOUBLE PRECISION,
    last_inbound_at DOUBLE PRECISION,
    -- The contact the conversation was opened for. A merge moves a conversation to the
    -- contact its contact joined and leaves this as it was (and unmerge moves it back).
    opened_for TEXT COLLATE "C",
    -- Assigned by the router (a manual assignment may be forced over capacity).
    claimed BOOLEAN NOT NULL DEFAULT FALSE,
    -- Waiting for an agent means nobody holds it; assigned means somebody does.
    CHECK (status <> 'open' OR assignee IS NULL),
    CHECK (status <> 'assigned' OR assignee IS NOT NULL)
);
-- One active conversation per contact it was opened for (gateway/domain/threading.py: a
-- message joins its contact's active conversation; a new one is opened only when there is
-- none), so two instances racing for one contact cannot both open one. A merge keeps the
-- merged contact's conversations apart (`opened_for` stays theirs). As the SQLite store's
-- migration 11.
CREATE UNIQUE INDEX conversations_one_active ON conversations(contact_id)
    WHERE status IN ('open', 'assigned', 'pending') AND opened_for = contact_id;
CREATE INDEX conversations_contact ON conversations(contact_id, status);
CREATE INDEX conversations_assignee ON conversations(assignee, channel_kind, status);
CREATE INDEX conversations_routable
    ON conversations(channel_kind, queue, required_skills, priority DESC, created_at, id)
    WHERE status = 'open' AND assignee IS NULL;
CREATE INDEX conversations_list_status ON conversations(status, id);
CREATE INDEX conversations_list_queue ON conversations(queue, id);
CREATE INDEX conversations_list_assignee ON conversations(assignee, id);
CREATE INDEX conversations_list_channel ON conversations(last_channel, id);
CREATE INDEX conversations_list_contact ON conversations(contact_id, id);
CREATE TABLE messages (
    id TEXT COLLATE "C" PRIMARY KEY,
    conversation_id TEXT COLLATE "C" NOT NULL REFERENCES conversations(id),
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    channel TEXT COLLATE "C" NOT NULL,
    sender_type TEXT NOT NULL,
    sender_id TEXT,
    text TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    html TEXT,
    subject TEXT,
    attachments TEXT NOT NULL DEFAULT '[]',
    external_id TEXT COLLATE "C",
    provider_message_id TEXT COLLATE "C",
    status TEXT,
    reason TEXT,
    automated BOOLEAN NOT NULL DEFAULT FALSE,
    metadata TEXT NOT NULL DEFAULT '{}',
    raw_blob TEXT COLLATE "C"
);
-- One message per channel and external id: a redelivery is a duplicate, also when two
-- instances take it at the same moment.
CREATE UNIQUE INDEX messages_external ON messages(channel, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX messages_provider ON messages(provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX messages_conversation ON messages(conversation_id, created_at);
CREATE INDEX messages_raw_blob ON messages(raw_blob) WHERE raw_blob IS NOT NULL;
CREATE TABLE edits (
    channel TEXT COLLATE "C" NOT NULL,
    external_id TEXT COLLATE "C" NOT NULL,
    message_id TEXT COLLATE "C" NOT NULL REFERENCES messages(id),
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (channel, external_id)
);
-- The outbox: which instance holds each item (`holder`) and until when (`lease_until`).
CREATE TABLE outbox (
    message_id TEXT COLLATE "C" PRIMARY KEY REFERENCES messages(id),
    channel TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION,
    holder TEXT,
    last_error TEXT,
    to_kind TEXT,
    to_address TEXT,
    CHECK ((holder IS NULL) = (lease_until IS NULL))
);
CREATE INDEX outbox_due ON outbox(next_attempt_at);
CREATE TABLE early_receipts (
    channel TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (channel, provider_message_id, status)
);
CREATE TABLE agents (
    id TEXT COLLATE "C" PRIMARY KEY,
    presence TEXT NOT NULL,
    capacity TEXT NOT NULL,
    last_assigned_at DOUBLE PRECISION
);
CREATE TABLE agent_load (
    agent_id TEXT COLLATE "C" NOT NULL,
    channel_kind TEXT COLLATE "C" NOT NULL,
    n INTEGER NOT NULL CHECK (n >= 0),
    PRIMARY KEY (agent_id, channel_kind)
);
-- A router's claim never takes an agent over the capacity the agent has when the claim
-- commits: the claiming transaction locks the agent's row, and this trigger compares the
-- agent's load for the conversation's channel kind with its capacity (the kind's own
-- entry, else `default`, else 0) as they are inside that transaction.
CREATE FUNCTION conversations_claim_within_capacity() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.claimed AND NEW.assignee IS NOT NULL AND NEW.status IN ('assigned', 'pending')
        AND (OLD.assignee IS DISTINCT FROM NEW.assignee OR NOT OLD.claimed)
        AND COALESCE((SELECT n FROM agent_load
                      WHERE agent_id = NEW.assignee AND channel_kind = NEW.channel_kind), 0)
            >= COALESCE((SELECT COALESCE((capacity::jsonb ->> NEW.channel_kind)::int,
                                         (capacity::jsonb ->> 'default')::int)
                         FROM agents WHERE id = NEW.assignee), 0)
    THEN
        RAISE EXCEPTION 'claim over the agent''s capacity' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER conversations_claim_within_capacity
    BEFORE UPDATE OF assignee, claimed ON conversations
    FOR EACH ROW EXECUTE FUNCTION conversations_claim_within_capacity();
CREATE TABLE queue_cursors (
    queue TEXT COLLATE "C" PRIMARY KEY,
    agent_id TEXT NOT NULL
);
-- The event log. Ids are not drawn from a sequence (drawn at insert, committed later, so
-- a late commit could land below an id a reader has passed): the writing transaction
-- takes them from `event_head` as its last statement, and the row lock it takes there is
-- held until its commit, so ids are handed out in commit order, without holes
-- (docs/eventlog.md).
CREATE TABLE events (
    id BIGINT PRIMARY KEY,
    type TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX events_at ON events(at);
CREATE TABLE event_head (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq BIGINT NOT NULL
);
INSERT INTO event_head(one, seq) VALUES (TRUE, 0);
CREATE TABLE kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE blobs (
    id TEXT COLLATE "C" PRIMARY KEY,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BYTEA NOT NULL
);
CREATE TABLE quarantine (
    seq BIGSERIAL UNIQUE,
    id TEXT COLLATE "C" PRIMARY KEY,
    channel TEXT NOT NULL,
    content_type TEXT NOT NULL,
    data BYTEA NOT NULL,
    external_id TEXT,
    reason TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'retried', 'dismissed')),
    retries INTEGER NOT NULL DEFAULT 0,
    message_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX quarantine_status ON quarantine(status, channel)
""",
    ),
    (
        2,
        """
-- Business hours, SLAs and the wait queue (issue 12; the SQLite store's migration 12). The
-- SLA clocks of a conversation: its policy, each target's due time (as the API shows it),
-- what has fired (warnings, breaches) and the earliest warning or breach still to fire
-- (`next_at`, what the timer reads). `targets` and `fired` are JSON text as written, not
-- jsonb: nothing queries into them, and jsonb would reorder the targets the API lists.
CREATE TABLE sla (
    conversation_id TEXT COLLATE "C" PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
    policy TEXT NOT NULL,
    targets TEXT NOT NULL,
    fired TEXT NOT NULL DEFAULT '{}',
    next_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX sla_next ON sla(next_at) WHERE next_at IS NOT NULL;
-- How far the SLA clocks have read the event log (what changed since is recomputed). A
-- timer pass locks this row: passes of several instances take turns.
CREATE TABLE sla_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), event_id BIGINT NOT NULL);
INSERT INTO sla_cursor(id, event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events;
-- The nearest due time of a conversation's running SLA targets (1e18: none), for the
-- routing order `sla`: highest priority, nearest breach, oldest — read in index order.
ALTER TABLE conversations ADD COLUMN sla_due DOUBLE PRECISION NOT NULL DEFAULT 1e18;
CREATE INDEX conversations_routable_sla
    ON conversations(channel_kind, queue, required_skills, priority DESC, sla_due, created_at, id)
    WHERE status = 'open' AND assignee IS NULL;
-- Automatic notices a conversation got once (out of hours, a long wait): the key makes
-- "once" hold across instances.
CREATE TABLE notices (
    conversation_id TEXT COLLATE "C" NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (conversation_id, kind)
)
""",
    ),
    (
        3,
        """
-- Escalation, offers, reassignment, sticky routing and the offline policy (issue 12), as
-- the SQLite store's migration 13. The stamps are kept by `stamp_events`
-- (gateway/store/postgres/stamps.py) in the transaction that appends the event they
-- follow, before it takes the event log's head: what SQLite's `stamps` trigger does.
--
-- waits: when a conversation started waiting (created, reopened, transferred, requeued)
-- and the escalation step it reached; `due` is the next step, set by the escalation timer
-- (state new -> scheduled; idle once assigned or when nothing more is due).
CREATE TABLE waits (
    conversation_id TEXT COLLATE "C" PRIMARY KEY,
    reason TEXT NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('new', 'scheduled', 'idle')),
    due DOUBLE PRECISION
);
CREATE INDEX waits_new ON waits(conversation_id) WHERE state = 'new';
CREATE INDEX waits_due ON waits(due) WHERE state = 'scheduled';
-- An offer of a conversation to one agent; a pending one holds a unit of the agent's
-- capacity (agent_load) until it is accepted (it becomes the assignment's), rejected,
-- expired or withdrawn (the conversation was assigned, moved or resolved meanwhile).
CREATE TABLE offers (
    id TEXT COLLATE "C" PRIMARY KEY,
    conversation_id TEXT COLLATE "C" NOT NULL,
    agent_id TEXT COLLATE "C" NOT NULL,
    channel_kind TEXT COLLATE "C" NOT NULL,
    queue TEXT COLLATE "C" NOT NULL,
    strategy TEXT NOT NULL,
    reasons TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'accepted', 'rejected', 'expired', 'withdrawn')),
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    answered_at DOUBLE PRECISION
);
-- One pending offer per conversation, also when two instances offer it at once.
CREATE UNIQUE INDEX offers_pending_conversation ON offers(conversation_id)
    WHERE status = 'pending';
CREATE INDEX offers_pending_due ON offers(expires_at) WHERE status = 'pending';
CREATE INDEX offers_agent ON offers(agent_id, status);
CREATE INDEX offers_conversation_agent ON offers(conversation_id, agent_id, created_at);
-- Agents who declined a conversation (rejected, let an offer time out) or lost it (no
-- reply, offline): routing skips them for it for `routing.skip_declined_for`.
CREATE TABLE declines (
    conversation_id TEXT COLLATE "C" NOT NULL,
    agent_id TEXT COLLATE "C" NOT NULL,
    reason TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (conversation_id, agent_id)
);
-- The last agent reply of each conversation (no-reply reassignment, sticky routing).
CREATE TABLE agent_replies (
    conversation_id TEXT COLLATE "C" PRIMARY KEY,
    agent_id TEXT COLLATE "C" NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
-- Since when each agent has its current presence (the offline grace period).
CREATE TABLE presence_stamps (
    agent_id TEXT COLLATE "C" PRIMARY KEY,
    presence TEXT NOT NULL,
    since DOUBLE PRECISION NOT NULL
);
-- A database that already holds conversations: they wait since their last change, their
-- last agent replies are known, and every agent has had its presence since now.
INSERT INTO waits(conversation_id, reason, since, step, state)
    SELECT id, 'created', updated_at, 0, 'new' FROM conversations
    WHERE status = 'open' AND assignee IS NULL;
INSERT INTO agent_replies(conversation_id, agent_id, at)
    SELECT DISTINCT ON (conversation_id) conversation_id, sender_id, created_at FROM messages
    WHERE direction = 'out' AND sender_type = 'agent' AND sender_id IS NOT NULL
    ORDER BY conversation_id, created_at DESC;
INSERT INTO presence_stamps(agent_id, presence, since)
    SELECT id, presence, extract(epoch FROM now())::float8 FROM agents
""",
    ),
    (
        4,
        """
-- KPI rollups (gateway/kpis/figures.py), folded from the event log by `PgStats.stats_fold`
-- (gateway/store/postgres/stats.py); as the SQLite store's migration 14, which says what
-- each table holds. `active` stays 0/1, as the shared fold writes it.
CREATE TABLE kpi_conversations (
    conversation_id TEXT COLLATE "C" PRIMARY KEY,
    channel TEXT COLLATE "C" NOT NULL,
    queue TEXT COLLATE "C" NOT NULL,
    agent TEXT COLLATE "C",
    created_at DOUBLE PRECISION NOT NULL,
    cycle_started_at DOUBLE PRECISION NOT NULL,
    assigned_at DOUBLE PRECISION,
    first_response_at DOUBLE PRECISION,
    first_resolved_at DOUBLE PRECISION,
    replies INTEGER NOT NULL DEFAULT 0,
    reopens INTEGER NOT NULL DEFAULT 0,
    wait_started_at DOUBLE PRECISION,
    awaiting DOUBLE PRECISION NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
);
CREATE INDEX kpi_conversations_active ON kpi_conversations(queue, agent) WHERE active = 1;
CREATE TABLE kpi_facts (
    kind TEXT COLLATE "C" NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    seq BIGINT NOT NULL,
    start DOUBLE PRECISION,
    start2 DOUBLE PRECISION,
    value DOUBLE PRECISION,
    conversation_id TEXT COLLATE "C" NOT NULL,
    channel TEXT COLLATE "C" NOT NULL,
    queue TEXT COLLATE "C" NOT NULL,
    agent TEXT COLLATE "C",
    PRIMARY KEY (kind, at, seq)
);
CREATE INDEX kpi_facts_channel ON kpi_facts(kind, channel, at);
CREATE INDEX kpi_facts_queue ON kpi_facts(kind, queue, at);
CREATE INDEX kpi_facts_agent ON kpi_facts(kind, agent, at);
-- A reopening voids its conversation's first-contact resolution: found by conversation.
CREATE INDEX kpi_facts_first_resolution ON kpi_facts(conversation_id, at)
    WHERE kind = 'first_resolution';
CREATE TABLE kpi_slots (
    kind TEXT COLLATE "C" NOT NULL,
    slot BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (kind, slot)
);
CREATE TABLE kpi_keys (
    dim TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (dim, value)
)
""",
    ),
    (
        5,
        """
-- Customer surveys (gateway/surveys/; as the SQLite store's migration 15). One row per
-- question sent; `score` stays NULL until the customer answers. `seq` orders the list
-- (newest first) as SQLite's rowid does. Read by the KPIs: keep these columns.
CREATE TABLE survey_responses (
    seq BIGSERIAL UNIQUE,
    id TEXT COLLATE "C" PRIMARY KEY,
    conversation_id TEXT COLLATE "C" NOT NULL,
    contact_id TEXT COLLATE "C" NOT NULL,
    channel TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('csat', 'nps', 'ces')),
    score INTEGER,
    comment TEXT,
    agent_id TEXT COLLATE "C",
    queue TEXT COLLATE "C" NOT NULL,
    sent_at DOUBLE PRECISION NOT NULL,
    answered_at DOUBLE PRECISION,
    language TEXT NOT NULL,
    message_id TEXT COLLATE "C",
    resolved_at DOUBLE PRECISION NOT NULL,
    answer_channel TEXT COLLATE "C",
    answer_external_id TEXT COLLATE "C",
    commented_at DOUBLE PRECISION
);
CREATE INDEX survey_responses_contact ON survey_responses(contact_id, kind, sent_at);
CREATE INDEX survey_responses_sent ON survey_responses(sent_at);
CREATE INDEX survey_responses_answered ON survey_responses(answered_at)
    WHERE answered_at IS NOT NULL;
CREATE INDEX survey_responses_conversation ON survey_responses(conversation_id);
-- One answer per inbound message: a redelivery finds the response it answered.
CREATE UNIQUE INDEX survey_responses_answer ON survey_responses(answer_channel, answer_external_id)
    WHERE answer_external_id IS NOT NULL;
-- One decision per resolution (sent, or why not): the conditional insert that makes a survey
-- go out once, whichever instance fires, and that a restart finds already made.
CREATE TABLE survey_decisions (
    conversation_id TEXT COLLATE "C" NOT NULL,
    resolved_at DOUBLE PRECISION NOT NULL,
    decided_at DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    response_id TEXT COLLATE "C",
    PRIMARY KEY (conversation_id, resolved_at)
);
CREATE TABLE survey_optouts (
    contact_id TEXT COLLATE "C" PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    via TEXT NOT NULL
);
-- The survey timer reads the resolutions due, oldest first.
CREATE INDEX conversations_resolved_at ON conversations(resolved_at) WHERE status = 'resolved'
""",
    ),
    (
        6,
        """
-- KPIs (issue 13; the SQLite store's migration 16): business seconds of the timed facts,
-- and each SLA target's outcome as the fold decided it.
ALTER TABLE kpi_facts ADD COLUMN business DOUBLE PRECISION;
CREATE TABLE kpi_sla (
    conversation_id TEXT COLLATE "C" NOT NULL,
    target TEXT COLLATE "C" NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    outcome TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (conversation_id, target, since)
);
-- Daily histograms of the timed figures (the SQLite store's migration 16 says what they hold).
CREATE TABLE kpi_hist (
    kind TEXT COLLATE "C" NOT NULL,
    dim TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    day BIGINT NOT NULL,
    bin INTEGER NOT NULL,
    n BIGINT NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    lo DOUBLE PRECISION NOT NULL,
    hi DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, dim, day, key, bin)
)
""",
    ),
    (
        7,
        r"""
-- The agent workspace (issue 14); as the SQLite store's migration 17.
ALTER TABLE conversations ADD COLUMN last_message_at DOUBLE PRECISION;
UPDATE conversations c SET last_message_at = m.latest
    FROM (SELECT conversation_id, MAX(created_at) AS latest FROM messages
          GROUP BY conversation_id) m
    WHERE m.conversation_id = c.id;
CREATE FUNCTION switchboard_last_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations
        SET last_message_at = GREATEST(COALESCE(last_message_at, 0), NEW.created_at)
        WHERE id = NEW.conversation_id;
    RETURN NULL;
END $$;
CREATE TRIGGER conversations_last_message AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION switchboard_last_message();
CREATE INDEX conversations_ws_last ON conversations((COALESCE(last_message_at, created_at)), id);
CREATE INDEX conversations_ws_created ON conversations(created_at, id);
CREATE INDEX conversations_ws_priority ON conversations(priority, id);
CREATE INDEX conversations_ws_sla ON conversations(sla_due, id);
CREATE TABLE read_markers (
    reader TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    read_at DOUBLE PRECISION NOT NULL,
    message_id TEXT,
    PRIMARY KEY (reader, conversation_id)
);
CREATE TABLE snoozes (
    conversation_id TEXT COLLATE "C" PRIMARY KEY,
    until DOUBLE PRECISION NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    by TEXT
);
CREATE INDEX snoozes_until ON snoozes(until);
-- Full-text search: `simple` configuration (no language's stemming), accents folded with
-- unaccent where the server has it (else lower case only), GIN expression indexes (built
-- over the existing rows here). Verification codes are never in the index.
DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS unaccent;
    EXCEPTION WHEN OTHERS THEN
        NULL;  -- not installed, or no right to create it: lower case only
    END;
END $$;
DO $$
DECLARE
    ext_schema TEXT;
BEGIN
    SELECT n.nspname INTO ext_schema FROM pg_extension e
        JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'unaccent';
    IF ext_schema IS NOT NULL THEN
        EXECUTE format(
            'CREATE FUNCTION switchboard_fold(t TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE'
            ' PARALLEL SAFE AS $f$ SELECT %I.unaccent(%L::regdictionary, lower(coalesce(t, '''')))'
            ' $f$', ext_schema, ext_schema || '.unaccent');
    ELSE
        CREATE FUNCTION switchboard_fold(t TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE
            PARALLEL SAFE AS $f$ SELECT lower(coalesce(t, '')) $f$;
    END IF;
END $$;
CREATE INDEX messages_search ON messages USING GIN
    (to_tsvector('simple', switchboard_fold(coalesce(subject, '') || ' ' || text)))
    WHERE strpos(metadata, '"verification"') = 0;
CREATE INDEX contacts_search ON contacts USING GIN (to_tsvector('simple', switchboard_fold(name)));
CREATE INDEX identities_search ON identities USING GIN
    (to_tsvector('simple', switchboard_fold(regexp_replace(address, '[^[:alnum:]]+', ' ', 'g'))));
""",
    ),
    (
        8,
        """
-- The agent workspace (issue 14; as the SQLite store's migration 18). Internal notes: a
-- table of their own, so nothing that reads messages (outbox, widget history, SLA, KPIs)
-- sees one.
CREATE TABLE notes (
    id TEXT COLLATE "C" PRIMARY KEY,
    conversation_id TEXT COLLATE "C" NOT NULL REFERENCES conversations(id),
    sender_type TEXT NOT NULL,
    sender_id TEXT COLLATE "C",
    text TEXT NOT NULL,
    mentions TEXT NOT NULL DEFAULT '[]',
    attachments TEXT NOT NULL DEFAULT '[]',
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX notes_conversation ON notes(conversation_id, created_at);
-- Canned replies made through the API. `owner`: the agent of a personal reply, '' for a
-- team one; a shortcut is unique per owner.
CREATE TABLE canned_replies (
    id TEXT COLLATE "C" PRIMARY KEY,
    shortcut TEXT COLLATE "C" NOT NULL,
    title TEXT NOT NULL,
    texts TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('team', 'personal')),
    queues TEXT NOT NULL DEFAULT '[]',
    agent TEXT COLLATE "C",
    owner TEXT COLLATE "C" NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (owner, shortcut)
);
-- Who merged two contacts by hand (NULL: a verification); such a merge has no identity.
ALTER TABLE merges ADD COLUMN by_whom TEXT;
CREATE INDEX merges_target ON merges(target, at)
""",
    ),
    (
        9,
        """
-- Issue 11: leases held in the store (the arbiter across instances, and the fallback while
-- Redis is down). expires_at is the database server's time; token the highest ever issued.
CREATE TABLE coord_leases (
    name TEXT COLLATE "C" PRIMARY KEY,
    holder TEXT,
    token BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
)
""",
    ),
    (
        10,
        """
-- Issue 15: the conversations a bot has (queue 'bot', status 'open'), read by the bot
-- stage's idle timer and its restart recovery, without the ones it resolved long ago.
CREATE INDEX conversations_list_queue_status ON conversations(queue, status, id)
""",
    ),
    (
        11,
        """
-- Issue 15: the customer portal (gateway/portal/). Every portal link carries its contact's
-- epoch; revoking the contact's links bumps it.
ALTER TABLE contacts ADD COLUMN portal_epoch BIGINT NOT NULL DEFAULT 0
""",
    ),
    (
        12,
        """
-- KPIs (issue 13): every timed figure's samples packed as arrays (the SQLite store's
-- migration 22 says what they hold); little-endian 8-byte floats, appended to by the fold.
CREATE TABLE kpi_samples (
    kind TEXT COLLATE "C" NOT NULL,
    dim TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    span BIGINT NOT NULL,
    samples BYTEA NOT NULL,
    PRIMARY KEY (kind, dim, span, key)
);
-- By agent the histograms are neither read nor kept any more (the samples above are).
DELETE FROM kpi_hist WHERE dim = 'agent';
-- Facts counted per UTC day, kind and agent ('': none); filled here from the facts folded
-- so far, then by the fold (the SQLite store's migration 22).
CREATE TABLE kpi_agent_days (
    day BIGINT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    agent TEXT COLLATE "C" NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (day, kind, agent)
);
INSERT INTO kpi_agent_days(day, kind, agent, n)
    SELECT FLOOR(at / 86400)::bigint, kind, COALESCE(agent, ''), COUNT(*) FROM kpi_facts
    GROUP BY 1, 2, 3
""",
    ),
    (
        13,
        """
-- The bot stage's turn of a conversation, one instance at a time (the SQLite store's
-- migration 23); `until` is read against the database server's clock.
CREATE TABLE bot_turns (
    conversation_id TEXT COLLATE "C" PRIMARY KEY,
    holder TEXT COLLATE "C" NOT NULL,
    until TIMESTAMPTZ NOT NULL
)
""",
    ),
]
