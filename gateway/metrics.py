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


METRICS = Metrics()
