"""Telegram bot channel (`telegram`), polling or webhook."""

from .connector import TelegramConnector, split_text
from .limiter import FloodLimiter, TokenBucket
from .settings import TelegramSettings
from .updates import message_ref, to_inbound

__all__ = [
    "FloodLimiter",
    "TelegramConnector",
    "TelegramSettings",
    "TokenBucket",
    "message_ref",
    "split_text",
    "to_inbound",
]
