"""The SQLite store's surveys: the questions sent after a resolution, their answers, the
decision made once per resolution, and the contacts who want no surveys."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from connectors.base import Identity
from gateway.model import Contact, Conversation, Event, Message, NewEvent, dumps
from gateway.store.base import (
    NotFound,
    OutboundRequest,
    SurveyFacts,
    SurveyMatch,
    SurveyResponse,
    SurveySend,
    SurveyStore,
)

_COLS = (
    "id, conversation_id, contact_id, channel, kind, score, comment, agent_id, queue, sent_at,"
    " answered_at, language, message_id, resolved_at"
)


def _response(row: tuple[Any, ...]) -> SurveyResponse:
    return SurveyResponse(
        id=row[0],
        conversation_id=row[1],
        contact_id=row[2],
        channel=row[3],
        kind=row[4],
        score=None if row[5] is None else int(row[5]),
        comment=row[6],
        agent_id=row[7],
        queue=row[8],
        sent_at=float(row[9]),
        answered_at=None if row[10] is None else float(row[10]),
        language=row[11],
        message_id=row[12],
        resolved_at=float(row[13]),
    )


def survey_facts(
    conv: Conversation,
    contact_id: str,
    attributes: dict[str, str],
    opted_out: bool,
    last_in_automated: bool | None,
    last_out_status: str | None,
    last_sent: dict[str, float],
    recent_surveys: int,
    recent_automatic: int,
) -> SurveyFacts:
    """What the policy is told about one resolution, from what a store read (shared by the
    SQLite and PostgreSQL stores): the conversation answers for the contact it resolves to;
    it was automated when its latest inbound message was, bounced when its latest outbound
    one failed."""
    conv.contact_id = contact_id
    return SurveyFacts(
        conversation=conv,
        contact_attributes=attributes,
        opted_out=opted_out,
        automated=bool(last_in_automated),
        bounced=last_out_status == "failed",
        last_sent=last_sent,
        recent_surveys=recent_surveys,
        recent_automatic=recent_automatic,
    )


def merge_attributes(current: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    """`current` with `changes` applied: a value sets its key, None removes it."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _queue_filter(queues: set[str] | None) -> tuple[str, list[Any]]:
    if queues is None:
        return "", []
    if not queues:
        return " AND 0", []
    return f" AND c.queue IN ({','.join('?' * len(queues))})", sorted(queues)


class SqliteSurveys(SurveyStore):
    """Mixed into `SqliteStore`, which provides `_tx`, `_run`, `_events` and the helpers
    below (conversations, contacts, the outbound path)."""

    _tx: Callable[..., Any]
    _run: Callable[..., Any]
    _events: Callable[[sqlite3.Connection, float, list[NewEvent]], list[Event]]
    _get_conv: Callable[[sqlite3.Connection, str], Conversation]
    _conv: Callable[[tuple[Any, ...]], Conversation]
    _CONV_COLS: str
    _contact: Callable[[sqlite3.Connection, str], Contact]
    _contact_of: Callable[[sqlite3.Connection, Identity], str | None]
    _resolve_contact_id: Callable[[sqlite3.Connection, str], str]
    _add_outbound: Callable[[sqlite3.Connection, OutboundRequest], tuple[Message, list[Event]]]

    async def survey_next_due(
        self, delay: float, horizon: float, queues: set[str] | None
    ) -> float | None:
        if queues is not None and not queues:
            return None  # no queue surveyed (INDEXED BY has no plan for `AND 0`)
        where, args = _queue_filter(queues)

        def op(conn: sqlite3.Connection) -> float | None:
            # In resolution order through the partial index, stopping at the first one not
            # decided: the planner would otherwise walk every resolved conversation.
            row = conn.execute(
                "SELECT c.resolved_at FROM conversations c INDEXED BY conversations_resolved_at"
                " WHERE c.status='resolved' AND c.resolved_at >= ?" + where + " AND NOT EXISTS"
                " (SELECT 1 FROM survey_decisions d WHERE d.conversation_id = c.id"
                " AND d.resolved_at = c.resolved_at) ORDER BY c.resolved_at LIMIT 1",
                (horizon, *args),
            ).fetchone()
            return None if row is None else float(row[0]) + delay

        result: float | None = await self._run(op)
        return result

    async def survey_due(
        self,
        now: float,
        delay: float,
        horizon: float,
        queues: set[str] | None,
        window: float,
        limit: int,
    ) -> list[SurveyFacts]:
        if queues is not None and not queues:
            return []  # no queue surveyed
        where, args = _queue_filter(queues)

        def op(conn: sqlite3.Connection) -> list[SurveyFacts]:
            rows = conn.execute(
                f"SELECT {', '.join('c.' + col.strip() for col in self._CONV_COLS.split(','))}"
                " FROM conversations c INDEXED BY conversations_resolved_at"
                " WHERE c.status='resolved' AND c.resolved_at >= ? AND c.resolved_at <= ?"
                + where
                + " AND NOT EXISTS (SELECT 1 FROM survey_decisions d WHERE d.conversation_id = c.id"
                " AND d.resolved_at = c.resolved_at) ORDER BY c.resolved_at LIMIT ?",
                (horizon, now - delay, *args, limit),
            ).fetchall()
            return [self._survey_facts(conn, self._conv(r), now, window) for r in rows]

        result: list[SurveyFacts] = await self._run(op)
        return result

    def _survey_facts(
        self, conn: sqlite3.Connection, conv: Conversation, now: float, window: float
    ) -> SurveyFacts:
        contact_id = self._resolve_contact_id(conn, conv.contact_id)
        attributes = self._contact(conn, contact_id).attributes
        opted = conn.execute(
            "SELECT 1 FROM survey_optouts WHERE contact_id=?", (contact_id,)
        ).fetchone()
        last_in = conn.execute(
            "SELECT automated FROM messages WHERE conversation_id=? AND direction='in'"
            " ORDER BY created_at DESC LIMIT 1",
            (conv.id,),
        ).fetchone()
        last_out = conn.execute(
            "SELECT status FROM messages WHERE conversation_id=? AND direction='out'"
            " ORDER BY created_at DESC LIMIT 1",
            (conv.id,),
        ).fetchone()
        last_sent = {
            str(kind): float(at)
            for kind, at in conn.execute(
                "SELECT kind, MAX(sent_at) FROM survey_responses WHERE contact_id=? GROUP BY kind",
                (contact_id,),
            )
        }
        recent = conn.execute(
            "SELECT COUNT(*) FROM survey_responses WHERE contact_id=? AND sent_at >= ?",
            (contact_id, now - window),
        ).fetchone()[0]
        automatic = conn.execute(
            "SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE c.contact_id=? AND m.direction='out' AND m.automated=1 AND m.created_at >= ?",
            (contact_id, now - window),
        ).fetchone()[0]
        return survey_facts(
            conv,
            contact_id,
            attributes,
            opted is not None,
            None if last_in is None else bool(last_in[0]),
            None if last_out is None else last_out[0],
            last_sent,
            int(recent),
            int(automatic),
        )

    async def survey_decide(
        self,
        conversation_id: str,
        resolved_at: float,
        outcome: str,
        send: SurveySend | None,
        now: float,
    ) -> tuple[SurveyResponse | None, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[SurveyResponse | None, list[Event]]:
            still = conn.execute(
                "SELECT 1 FROM conversations WHERE id=? AND status='resolved' AND resolved_at=?",
                (conversation_id, resolved_at),
            ).fetchone()
            if still is None:
                return None, []
            inserted = conn.execute(
                "INSERT OR IGNORE INTO survey_decisions(conversation_id, resolved_at, decided_at,"
                " outcome, response_id) VALUES (?,?,?,?,?)",
                (conversation_id, resolved_at, now, outcome, send.response.id if send else None),
            )
            if not inserted.rowcount or send is None:
                return None, []
            r = send.response
            if conn.execute(
                "SELECT 1 FROM survey_optouts WHERE contact_id=?", (r.contact_id,)
            ).fetchone():  # opted out since the facts were read: decided, not sent
                conn.execute(
                    "UPDATE survey_decisions SET outcome='opted_out', response_id=NULL"
                    " WHERE conversation_id=? AND resolved_at=?",
                    (conversation_id, resolved_at),
                )
                return None, []
            message, events = self._add_outbound(conn, send.message)
            r.message_id = message.id
            conn.execute(
                f"INSERT INTO survey_responses({_COLS}) VALUES ({','.join('?' * 14)})",
                (
                    r.id,
                    r.conversation_id,
                    r.contact_id,
                    r.channel,
                    r.kind,
                    None,
                    None,
                    r.agent_id,
                    r.queue,
                    r.sent_at,
                    None,
                    r.language,
                    r.message_id,
                    r.resolved_at,
                ),
            )
            events += self._events(conn, now, [NewEvent("survey.sent", {"survey": r.to_api()})])
            return r, events

        result: tuple[SurveyResponse | None, list[Event]] = await self._tx(op)
        return result

    @staticmethod
    def _survey(conn: sqlite3.Connection, response_id: str) -> SurveyResponse:
        row = conn.execute(
            f"SELECT {_COLS} FROM survey_responses WHERE id=?", (response_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"survey {response_id} not found")
        return _response(row)

    async def survey_get(self, response_id: str) -> SurveyResponse:
        result: SurveyResponse = await self._run(lambda conn: self._survey(conn, response_id))
        return result

    async def survey_match(
        self,
        identity: Identity,
        channel: str,
        external_id: str,
        since: float,
        comment_since: float | None = None,
    ) -> SurveyMatch:
        def op(conn: sqlite3.Connection) -> SurveyMatch:
            match = SurveyMatch(
                self._answered_by(conn, channel, external_id),
                self._open_for(conn, identity, channel, since),
            )
            if comment_since is not None and match.answered_by is None and match.open is None:
                contact_id = self._contact_of(conn, identity)
                row = conn.execute(
                    f"SELECT {_COLS} FROM survey_responses WHERE contact_id=? AND channel=?"
                    " AND answered_at >= ? AND score IS NOT NULL AND comment IS NULL"
                    " ORDER BY answered_at DESC LIMIT 1",
                    (contact_id, channel, comment_since),
                ).fetchone()
                match.awaiting_comment = None if row is None else _response(row)
            return match

        result: SurveyMatch = await self._run(op)
        return result

    def _open_for(
        self, conn: sqlite3.Connection, identity: Identity, channel: str, since: float
    ) -> SurveyResponse | None:
        contact_id = self._contact_of(conn, identity)
        if contact_id is None:
            return None
        row = conn.execute(
            f"SELECT {_COLS} FROM survey_responses WHERE contact_id=? AND channel=?"
            " AND answered_at IS NULL AND sent_at >= ? ORDER BY sent_at DESC LIMIT 1",
            (contact_id, channel, since),
        ).fetchone()
        return None if row is None else _response(row)

    @staticmethod
    def _answered_by(
        conn: sqlite3.Connection, channel: str, external_id: str
    ) -> SurveyResponse | None:
        row = conn.execute(
            f"SELECT {_COLS} FROM survey_responses WHERE answer_channel=? AND answer_external_id=?",
            (channel, external_id),
        ).fetchone()
        return None if row is None else _response(row)

    async def survey_open_for(
        self, identity: Identity, channel: str, since: float
    ) -> SurveyResponse | None:
        result: SurveyResponse | None = await self._run(
            lambda conn: self._open_for(conn, identity, channel, since)
        )
        return result

    async def survey_answered_by(self, channel: str, external_id: str) -> SurveyResponse | None:
        result: SurveyResponse | None = await self._run(
            lambda conn: self._answered_by(conn, channel, external_id)
        )
        return result

    async def survey_answer(
        self,
        response_id: str,
        score: int | None,
        comment: str | None,
        channel: str | None,
        external_id: str | None,
        now: float,
    ) -> tuple[SurveyResponse, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[SurveyResponse, list[Event]]:
            self._survey(conn, response_id)
            changed = False
            if score is not None:
                changed |= bool(
                    conn.execute(
                        "UPDATE survey_responses SET score=?, answered_at=?, answer_channel=?,"
                        " answer_external_id=? WHERE id=? AND answered_at IS NULL",
                        (score, now, channel, external_id, response_id),
                    ).rowcount
                )
            if comment is not None:
                changed |= bool(
                    conn.execute(
                        "UPDATE survey_responses SET comment=?, commented_at=? WHERE id=?"
                        " AND answered_at IS NOT NULL AND comment IS NOT ?",
                        (comment, now, response_id, comment),
                    ).rowcount
                )
            after = self._survey(conn, response_id)
            if not changed:
                return after, []
            return after, self._events(
                conn, now, [NewEvent("survey.answered", {"survey": after.to_api()})]
            )

        result: tuple[SurveyResponse, list[Event]] = await self._tx(op)
        return result

    async def survey_list(
        self,
        contact_id: str | None = None,
        conversation_id: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[SurveyResponse], str | None]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("contact_id", contact_id),
            ("conversation_id", conversation_id),
            ("kind", kind),
        ):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if cursor is not None:  # keyset on insertion order
            where.append("rowid < (SELECT rowid FROM survey_responses WHERE id=?)")
            args.append(cursor)
        sql = f"SELECT {_COLS} FROM survey_responses"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid DESC LIMIT ?"
        args.append(limit + 1)

        def op(conn: sqlite3.Connection) -> tuple[list[SurveyResponse], str | None]:
            rows = [_response(r) for r in conn.execute(sql, args).fetchall()]
            more = len(rows) > limit
            rows = rows[:limit]
            return rows, (rows[-1].id if more and rows else None)

        result: tuple[list[SurveyResponse], str | None] = await self._run(op)
        return result

    async def survey_optout(
        self, contact_id: str, opted_out: bool, via: str, now: float
    ) -> tuple[bool, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[bool, list[Event]]:
            target = self._resolve_contact_id(conn, contact_id)
            self._contact(conn, target)  # NotFound
            if opted_out:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO survey_optouts(contact_id, at, via) VALUES (?,?,?)",
                    (target, now, via),
                )
            else:
                cur = conn.execute("DELETE FROM survey_optouts WHERE contact_id=?", (target,))
            if not cur.rowcount:
                return False, []
            return True, self._events(
                conn,
                now,
                [
                    NewEvent(
                        "contact.survey_optout",
                        {"contact_id": target, "opted_out": opted_out, "via": via},
                    )
                ],
            )

        result: tuple[bool, list[Event]] = await self._tx(op)
        return result

    async def survey_opted_out(self, contact_id: str) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            target = self._resolve_contact_id(conn, contact_id)
            self._contact(conn, target)
            row = conn.execute(
                "SELECT at FROM survey_optouts WHERE contact_id=?", (target,)
            ).fetchone()
            return None if row is None else float(row[0])

        result: float | None = await self._run(op)
        return result

    async def contact_set_attributes(
        self, contact_id: str, attributes: dict[str, str | None], now: float
    ) -> tuple[Contact, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[Contact, list[Event]]:
            contact = self._contact(conn, self._resolve_contact_id(conn, contact_id))
            merged = merge_attributes(contact.attributes, attributes)
            if merged == contact.attributes:
                return contact, []
            conn.execute(
                "UPDATE contacts SET attributes=?, updated_at=? WHERE id=?",
                (dumps(merged), now, contact.id),
            )
            contact.attributes = merged
            return contact, self._events(
                conn,
                now,
                [NewEvent("contact.updated", {"contact_id": contact.id, "attributes": merged})],
            )

        result: tuple[Contact, list[Event]] = await self._tx(op)
        return result
