"""Twilio SMS and WhatsApp channels (`twilio_sms`, `twilio_whatsapp`)."""

from .connector import TwilioConnector, TwilioSmsConnector, TwilioWhatsAppConnector
from .settings import TwilioSmsSettings, TwilioWhatsAppSettings, WhatsAppTemplate
from .signature import SignatureVerifier, signed_url

__all__ = [
    "SignatureVerifier",
    "TwilioConnector",
    "TwilioSmsConnector",
    "TwilioSmsSettings",
    "TwilioWhatsAppConnector",
    "TwilioWhatsAppSettings",
    "WhatsAppTemplate",
    "signed_url",
]
