"""Local stand-ins for providers this machine cannot reach, and a fake ConnectorContext.

- `tests.standins.twilio.TwilioStandin`: Twilio's REST API (Messages, Accounts, Media) and
  a way to deliver signed webhooks like Twilio does.
- `tests.standins.telegram.TelegramStandin`: the Telegram Bot API (getMe, getUpdates,
  setWebhook, deleteWebhook, sendMessage, getFile, file download) and webhook delivery.
- `tests.standins.context.FakeGateway`: a ConnectorContext whose `submit` records and
  dedupes like the core, an in-memory KeyValue, and a real aiohttp server for routes.
"""
