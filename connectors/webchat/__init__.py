"""The `webchat` channel: a chat widget any website embeds with one `<script>` tag,
talking to the gateway over a WebSocket."""

from connectors.webchat.connector import WebchatConnector
from connectors.webchat.settings import WebchatSettings

__all__ = ["WebchatConnector", "WebchatSettings"]
