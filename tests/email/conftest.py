"""Fixtures of the email tests (defined in email_support.py, shared with the test modules)."""

from email_support import core, ctx, dovecot, kv, mailbox, smtp_server

__all__ = ["core", "ctx", "dovecot", "kv", "mailbox", "smtp_server"]
