"""The email channel connector (IMAP in, SMTP out)."""

from connectors.email.backfill import backfill
from connectors.email.connector import EmailConnector
from connectors.email.settings import EmailSettings, ImapSettings, SmtpSettings

__all__ = ["EmailConnector", "EmailSettings", "ImapSettings", "SmtpSettings", "backfill"]
