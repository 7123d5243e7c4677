"""Telegram updates in the core's vocabulary: text, photos, documents, voice notes, edits."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from telegram import Bot, Message, Update
from telegram.error import TelegramError

from connectors.base import Answer, Attachment, Identity, InboundMessage

ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
# Inline keyboard buttons of a survey (`Prompt`) carry "sv:<prompt id>:<value>".
ANSWER_PREFIX = "sv:"


def answer_data(prompt_id: str, value: str) -> str:
    return f"{ANSWER_PREFIX}{prompt_id}:{value}"


def message_ref(chat_id: int, message_id: int) -> str:
    """The external id of a Telegram message: `chat_id:message_id`."""
    return f"{chat_id}:{message_id}"


@dataclass(slots=True)
class _FileRef:
    file_id: str
    name: str
    content_type: str
    size: int | None


def _files(message: Message, max_bytes: int) -> list[_FileRef]:
    refs: list[_FileRef] = []
    if message.photo:
        # The largest size that fits the limit (else the largest, recorded without data).
        sizes = sorted(message.photo, key=lambda p: p.file_size or p.width * p.height)
        fitting = [p for p in sizes if p.file_size is not None and p.file_size <= max_bytes]
        photo = fitting[-1] if fitting else sizes[-1]
        refs.append(
            _FileRef(
                photo.file_id, f"photo_{photo.file_unique_id}.jpg", "image/jpeg", photo.file_size
            )
        )
    if message.document:
        doc = message.document
        refs.append(
            _FileRef(
                doc.file_id,
                doc.file_name or f"document_{doc.file_unique_id}",
                doc.mime_type or "application/octet-stream",
                doc.file_size,
            )
        )
    if message.voice:
        voice = message.voice
        refs.append(
            _FileRef(
                voice.file_id,
                f"voice_{voice.file_unique_id}.ogg",
                voice.mime_type or "audio/ogg",
                voice.file_size,
            )
        )
    if message.audio:
        audio = message.audio
        refs.append(
            _FileRef(
                audio.file_id,
                audio.file_name or f"audio_{audio.file_unique_id}",
                audio.mime_type or "audio/mpeg",
                audio.file_size,
            )
        )
    if message.video:
        video = message.video
        refs.append(
            _FileRef(
                video.file_id,
                video.file_name or f"video_{video.file_unique_id}.mp4",
                video.mime_type or "video/mp4",
                video.file_size,
            )
        )
    return refs


async def _download(
    bot: Bot,
    ref: _FileRef,
    max_bytes: int,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> Attachment:
    """getFile, then the file URL. The URL holds the bot token, so it is never stored."""
    size = ref.size or 0
    if ref.size is not None and ref.size > max_bytes:
        return Attachment(ref.name, ref.content_type, size)
    try:
        tg_file = await bot.get_file(ref.file_id)
        if tg_file.file_size is not None and tg_file.file_size > max_bytes:
            return Attachment(ref.name, ref.content_type, tg_file.file_size)
        data = bytes(await tg_file.download_as_bytearray())
    except TelegramError as exc:
        log.warning("telegram: file %s not downloaded: %s", ref.file_id, exc)
        return Attachment(ref.name, ref.content_type, size)
    if len(data) > max_bytes:
        return Attachment(ref.name, ref.content_type, len(data))
    return Attachment(ref.name, ref.content_type, len(data), data=data)


async def to_inbound(
    update: Update,
    bot: Bot,
    *,
    max_file_bytes: int,
    private_chats_only: bool,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> InboundMessage | None:
    """The update as an inbound message, or None when it is nothing to store (another kind of
    update, a group message when only private chats are served, no sender)."""
    if update.callback_query is not None:
        return _callback_answer(update)
    message = update.message or update.edited_message
    if message is None or message.from_user is None:
        return None
    if private_chats_only and message.chat.type != "private":
        return None
    user = message.from_user
    ref = message_ref(message.chat.id, message.message_id)
    edited = update.edited_message is not None
    external_id = ref
    if edited:
        stamp = int(message.edit_date.timestamp()) if message.edit_date else update.update_id
        external_id = f"{ref}:edit:{stamp}"
    files = _files(message, max_file_bytes)
    attachments = [await _download(bot, f, max_file_bytes, log) for f in files]
    attributes = {"language": user.language_code} if user.language_code else {}
    metadata: dict[str, object] = {
        "telegram_chat_id": message.chat.id,
        "telegram_chat_type": message.chat.type,
        "telegram_message_id": message.message_id,
        "telegram_update_id": update.update_id,
    }
    if user.username:
        metadata["telegram_username"] = user.username
    if files:
        metadata["telegram_file_ids"] = [f.file_id for f in files]
    return InboundMessage(
        external_id=external_id,
        sender=Identity("telegram", str(user.id)),
        text=message.text or message.caption or "",
        sender_name=user.full_name or None,
        attachments=attachments,
        contact_attributes=attributes,
        provider_message_id=ref,
        automated=user.is_bot,
        sent_at=message.edit_date if edited and message.edit_date else message.date,
        raw=json.dumps(update.to_dict(), ensure_ascii=False).encode("utf-8"),
        edits=ref if edited else None,
        metadata=metadata,
    )


def _callback_answer(update: Update) -> InboundMessage | None:
    """A survey button pressed (inline keyboard): the answer, normalised."""
    query = update.callback_query
    if query is None or not query.data or not query.data.startswith(ANSWER_PREFIX):
        return None
    prompt_id, _, value = query.data[len(ANSWER_PREFIX) :].rpartition(":")
    if not prompt_id or not value:
        return None
    user = query.from_user
    chat_id = query.message.chat.id if query.message is not None else user.id
    return InboundMessage(
        external_id=f"callback:{query.id}",
        sender=Identity("telegram", str(user.id)),
        text=value,
        sender_name=user.full_name or None,
        contact_attributes={"language": user.language_code} if user.language_code else {},
        automated=user.is_bot,
        raw=json.dumps(update.to_dict(), ensure_ascii=False).encode("utf-8"),
        metadata={"telegram_chat_id": chat_id, "telegram_update_id": update.update_id},
        answer=Answer(prompt_id, value),
    )
