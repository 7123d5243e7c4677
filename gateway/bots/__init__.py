"""External bots (issue 15): a routing rule's `bot: {webhook: NAME}` stage (stage.py), the
signed call to the bot (webhook.py) and its configuration (config.py)."""
