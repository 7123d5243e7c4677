"""Prometheus metrics of the gateway (exposed on GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "switchboard_messages_received_total",
            "Inbound messages stored",
            ["channel", "kind"],
            registry=r,
        )
        # Issue 15: what external bots did per customer message (gateway/bots/stage.py):
        # answer, ask, handoff (the bot's), bot_failed, timeout, keyword, max_turns,
        # automated, restart, bot_unavailable (the gateway's handoffs).
        self.bot_turns = Counter(
            "switchboard_bot_turns_total",
            "External bot turns by outcome",
            ["bot", "outcome"],
            registry=r,
        )
        # Issue 15: the self-service rate's parts: conversations a bot resolved with no
        # agent reply (`resolved_by_bot`), widget suggestions that answered the visitor's
        # question or did not (`kb_helpful`, `kb_unhelpful`).
        self.self_service = Counter(
            "switchboard_self_service_total",
            "Self-service outcomes",
            ["outcome"],
            registry=r,
        )
        # The chat widget's proactive invitations, per configured invitation: shown to a
        # visitor (reported by the widget) and answered by the visitor's first message.
        self.invitations_shown = Counter(
            "switchboard_invitations_shown_total",
            "Chat widget invitations shown to a visitor",
            ["channel", "invitation"],
            registry=r,
        )
        self.invitations_answered = Counter(
            "switchboard_invitations_answered_total",
            "Chat widget invitations a visitor answered by writing",
            ["channel", "invitation"],
            registry=r,
        )
        self.duplicates = Counter(
            "switchboard_messages_duplicate_total",
            "Inbound redeliveries dropped",
            ["channel"],
            registry=r,
        )
        self.messages_out = Counter(
            "switchboard_messages_sent_total",
            "Outbound delivery outcomes",
            ["channel", "status"],
            registry=r,
        )
        self.conversations_created = Counter(
            "switchboard_conversations_created_total",
            "Conversations opened",
            ["channel", "queue"],
            registry=r,
        )
        self.assignments = Counter(
            "switchboard_assignments_total",
            "Conversations assigned by the router",
            ["queue"],
            registry=r,
        )
        self.waiting = Gauge(
            "switchboard_conversations_waiting", "Conversations waiting for an agent", registry=r
        )
        self.outbox_send_seconds = Histogram(
            "switchboard_outbox_send_seconds", "Time of one send() call", ["channel"], registry=r
        )
        self.quarantined = Counter(
            "switchboard_inbound_quarantined_total",
            "Inbound items the gateway could not take, kept in quarantine",
            ["channel"],
            registry=r,
        )
        self.quarantine_unreviewed = Gauge(
            "switchboard_quarantine_unreviewed",
            "Quarantined inbound items nobody has re-submitted or dismissed yet",
            ["channel"],
            registry=r,
        )
        self.channel_up = Gauge(
            "switchboard_channel_up", "1 when the channel is running", ["channel"], registry=r
        )

        # --- KPIs (issue 13; fed by gateway/kpis/fold.py) ---------------------------------------
        self.first_response_seconds = Histogram(
            "switchboard_first_response_seconds",
            "Seconds from a conversation's creation to its first agent reply",
            ["channel", "queue"],
            buckets=(30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 172800),
            registry=r,
        )
        self.resolution_seconds = Histogram(
            "switchboard_resolution_seconds",
            "Seconds from a conversation's creation (or reopening) to its resolution",
            ["channel", "queue"],
            buckets=(300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800),
            registry=r,
        )
        self.backlog = Gauge(
            "switchboard_backlog",
            "Conversations not resolved (open, assigned, pending), by queue",
            ["queue"],
            registry=r,
        )
        self.queue_waiting = Gauge(
            "switchboard_queue_waiting",
            "Conversations whose latest customer message has no agent reply yet, by queue",
            ["queue"],
            registry=r,
        )
        self.agents_online = Gauge(
            "switchboard_agents_online", "Agents whose presence is online", registry=r
        )
        self.survey_score = Gauge(
            "switchboard_survey_score",
            "Survey scores of the last 30 days: csat (% of 4-5), nps (-100..100), ces (mean)",
            ["kind"],
            registry=r,
        )
        self.survey_responses = Gauge(
            "switchboard_survey_responses",
            "Survey answers of the last 30 days",
            ["kind"],
            registry=r,
        )


METRICS = Metrics()
