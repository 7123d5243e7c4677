"""Proactive outreach (issue 15): an agent or the API starts a conversation with a contact
on a channel that allows it (`policy`), committed in one unit of work by the store
(`store`) and sent through the normal outbox (`service`)."""
