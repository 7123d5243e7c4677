"""Time-driven work: the deadlines loop (deadlines are data in the store), SLA clocks,
out-of-hours and long-wait notices, escalation steps, offer timeouts, no-reply and
offline requeueing. The decisions are the router's (router/hours.py, router/sla.py,
router/policies.py); this package runs them on time and commits through the services."""
