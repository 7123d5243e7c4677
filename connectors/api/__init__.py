"""The generic `api` channel: customers' messages POSTed by your own systems, replies
POSTed back to your `outbound_url`, signed with Standard Webhooks."""

from connectors.api.connector import ApiConnector, ApiSettings

__all__ = ["ApiConnector", "ApiSettings"]
