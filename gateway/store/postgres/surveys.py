"""Surveys on PostgreSQL: the questions sent after a resolution, their answers, the decision
made once per resolution, and the contacts who want no surveys (as gateway/store/
sqlite/surveys.py, whose pure helpers build the facts and merge contact attributes).

Several instances fire the survey timer at once: the decision is one conditional insert
(`ON CONFLICT DO NOTHING` on the resolution's key) taken while the conversation's row is
locked, so a survey goes out once and never for a conversation reopened meanwhile; a score
counts once (an update conditional on no answer yet)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from connectors.base import Identity
from gateway.model import Contact, Conversation, Event, Message, NewEvent, dumps, loads
from gateway.store.base import (
    NotFound,
    OutboundRequest,
    SurveyFacts,
    SurveyMatch,
    SurveyResponse,
    SurveySend,
    SurveyStore,
)
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import (
    CONV_COLS,
    Conn,
    PgBase,
    contact_of,
    conv_row,
    get_contact,
    resolve_contact_id,
    rowcount,
)
from gateway.store.sqlite.surveys import _COLS, _response, merge_attributes, survey_facts

_C_CONV_COLS = ", ".join("c." + col.strip() for col in CONV_COLS.split(","))


def _queue_filter(queues: set[str] | None, mark: int) -> tuple[str, list[Any]]:
    """The conversations of `queues` (None: all, empty: none), its array as `$mark`."""
    if queues is None:
        return "", []
    if not queues:
        return " AND FALSE", []
    return f" AND c.queue = ANY(${mark}::text[])", [sorted(queues)]


async def _contact_attributes(conn: Conn, contact_id: str, lock: bool = False) -> dict[str, str]:
    raw = await conn.fetchval(
        "SELECT attributes FROM contacts WHERE id=$1" + (" FOR UPDATE" if lock else ""),
        contact_id,
    )
    if raw is None:
        raise NotFound(f"contact {contact_id} not found")
    attributes: dict[str, str] = loads(raw)
    return attributes


async def _survey(conn: Conn, response_id: str) -> SurveyResponse:
    row = await conn.fetchrow(f"SELECT {_COLS} FROM survey_responses WHERE id=$1", response_id)
    if row is None:
        raise NotFound(f"survey {response_id} not found")
    return _response(tuple(row))


async def _answered_by(conn: Conn, channel: str, external_id: str) -> SurveyResponse | None:
    row = await conn.fetchrow(
        f"SELECT {_COLS} FROM survey_responses WHERE answer_channel=$1 AND answer_external_id=$2",
        channel,
        external_id,
    )
    return None if row is None else _response(tuple(row))


async def _open_for(
    conn: Conn, identity: Identity, channel: str, since: float
) -> SurveyResponse | None:
    contact_id = await contact_of(conn, identity)
    if contact_id is None:
        return None
    row = await conn.fetchrow(
        f"SELECT {_COLS} FROM survey_responses WHERE contact_id=$1 AND channel=$2"
        " AND answered_at IS NULL AND sent_at >= $3 ORDER BY sent_at DESC LIMIT 1",
        contact_id,
        channel,
        since,
    )
    return None if row is None else _response(tuple(row))


class PgSurveys(PgBase, SurveyStore):
    """Mixed into `PostgresStore`, whose conversations module queues the question
    (`_add_outbound`, in the deciding transaction)."""

    _add_outbound: Callable[[Conn, OutboundRequest], Awaitable[tuple[Message, list[Event]]]]

    async def survey_next_due(
        self, delay: float, horizon: float, queues: set[str] | None
    ) -> float | None:
        where, args = _queue_filter(queues, 2)

        async def op(conn: Conn) -> float | None:
            # In resolution order through the partial index conversations_resolved_at,
            # stopping at the first one not decided.
            at = await conn.fetchval(
                "SELECT c.resolved_at FROM conversations c"
                " WHERE c.status='resolved' AND c.resolved_at >= $1" + where + " AND NOT EXISTS"
                " (SELECT 1 FROM survey_decisions d WHERE d.conversation_id = c.id"
                " AND d.resolved_at = c.resolved_at) ORDER BY c.resolved_at LIMIT 1",
                horizon,
                *args,
            )
            return None if at is None else float(at) + delay

        return await self._read(op)

    async def survey_due(
        self,
        now: float,
        delay: float,
        horizon: float,
        queues: set[str] | None,
        window: float,
        limit: int,
    ) -> list[SurveyFacts]:
        where, args = _queue_filter(queues, 4)

        async def op(conn: Conn) -> list[SurveyFacts]:
            rows = await conn.fetch(
                f"SELECT {_C_CONV_COLS} FROM conversations c"
                " WHERE c.status='resolved' AND c.resolved_at >= $1 AND c.resolved_at <= $2"
                + where
                + " AND NOT EXISTS (SELECT 1 FROM survey_decisions d WHERE d.conversation_id = c.id"
                " AND d.resolved_at = c.resolved_at) ORDER BY c.resolved_at LIMIT $3",
                horizon,
                now - delay,
                limit,
                *args,
            )
            return [await self._survey_facts(conn, conv_row(r), now, window) for r in rows]

        return await self._read(op)

    @staticmethod
    async def _survey_facts(
        conn: Conn, conv: Conversation, now: float, window: float
    ) -> SurveyFacts:
        contact_id = await resolve_contact_id(conn, conv.contact_id)
        attributes = await _contact_attributes(conn, contact_id)
        # One round trip for what the policy needs about the contact and the conversation.
        row = await conn.fetchrow(
            "SELECT"
            " EXISTS (SELECT 1 FROM survey_optouts WHERE contact_id=$1),"
            " (SELECT automated FROM messages WHERE conversation_id=$2 AND direction='in'"
            "  ORDER BY created_at DESC LIMIT 1),"
            " (SELECT COALESCE(status, '') FROM messages WHERE conversation_id=$2"
            "  AND direction='out' ORDER BY created_at DESC LIMIT 1),"
            " (SELECT COUNT(*) FROM survey_responses WHERE contact_id=$1 AND sent_at >= $3),"
            " (SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            "  WHERE c.contact_id=$1 AND m.direction='out' AND m.automated"
            "  AND m.created_at >= $3)",
            contact_id,
            conv.id,
            now - window,
        )
        assert row is not None
        last_sent = {
            str(r[0]): float(r[1])
            for r in await conn.fetch(
                "SELECT kind, MAX(sent_at) FROM survey_responses WHERE contact_id=$1 GROUP BY kind",
                contact_id,
            )
        }
        return survey_facts(
            conv,
            contact_id,
            attributes,
            bool(row[0]),
            row[1],
            row[2],
            last_sent,
            int(row[3]),
            int(row[4]),
        )

    async def survey_decide(
        self,
        conversation_id: str,
        resolved_at: float,
        outcome: str,
        send: SurveySend | None,
        now: float,
    ) -> tuple[SurveyResponse | None, list[Event]]:
        async def op(conn: Conn) -> tuple[SurveyResponse | None, list[Event]]:
            # The conversation's row is held to the commit: a reopening waits, and does not
            # slip in between this check and the question.
            still = await conn.fetchval(
                "SELECT 1 FROM conversations WHERE id=$1 AND status='resolved'"
                " AND resolved_at=$2 FOR UPDATE",
                conversation_id,
                resolved_at,
            )
            if still is None:
                return None, []
            # Opted out since the facts were read: decided, not sent.
            opted = send is not None and bool(
                await conn.fetchval(
                    "SELECT 1 FROM survey_optouts WHERE contact_id=$1", send.response.contact_id
                )
            )
            sending = send is not None and not opted
            inserted = await conn.fetchval(
                "INSERT INTO survey_decisions(conversation_id, resolved_at, decided_at, outcome,"
                " response_id) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (conversation_id, resolved_at) DO NOTHING RETURNING TRUE",
                conversation_id,
                resolved_at,
                now,
                "opted_out" if opted else outcome,
                send.response.id if send is not None and sending else None,
            )
            if not inserted or send is None or not sending:
                return None, []
            r = send.response
            message, events = await self._add_outbound(conn, send.message)
            r.message_id = message.id
            await conn.execute(
                f"INSERT INTO survey_responses({_COLS})"
                " VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6, $7, $8, NULL, $9, $10, $11)",
                r.id,
                r.conversation_id,
                r.contact_id,
                r.channel,
                r.kind,
                r.agent_id,
                r.queue,
                r.sent_at,
                r.language,
                r.message_id,
                r.resolved_at,
            )
            events += await append_events(
                conn, now, [NewEvent("survey.sent", {"survey": r.to_api()})]
            )
            return r, events

        return await self._tx(op)

    async def survey_get(self, response_id: str) -> SurveyResponse:
        return await self._read(lambda conn: _survey(conn, response_id))

    async def survey_match(
        self,
        identity: Identity,
        channel: str,
        external_id: str,
        since: float,
        comment_since: float | None = None,
    ) -> SurveyMatch:
        async def op(conn: Conn) -> SurveyMatch:
            match = SurveyMatch(
                await _answered_by(conn, channel, external_id),
                await _open_for(conn, identity, channel, since),
            )
            if comment_since is not None and match.answered_by is None and match.open is None:
                row = await conn.fetchrow(
                    f"SELECT {_COLS} FROM survey_responses WHERE contact_id=$1 AND channel=$2"
                    " AND answered_at >= $3 AND score IS NOT NULL AND comment IS NULL"
                    " ORDER BY answered_at DESC LIMIT 1",
                    await contact_of(conn, identity),
                    channel,
                    comment_since,
                )
                match.awaiting_comment = None if row is None else _response(tuple(row))
            return match

        return await self._read(op)

    async def survey_open_for(
        self, identity: Identity, channel: str, since: float
    ) -> SurveyResponse | None:
        return await self._read(lambda conn: _open_for(conn, identity, channel, since))

    async def survey_answered_by(self, channel: str, external_id: str) -> SurveyResponse | None:
        return await self._read(lambda conn: _answered_by(conn, channel, external_id))

    async def survey_answer(
        self,
        response_id: str,
        score: int | None,
        comment: str | None,
        channel: str | None,
        external_id: str | None,
        now: float,
    ) -> tuple[SurveyResponse, list[Event]]:
        async def op(conn: Conn) -> tuple[SurveyResponse, list[Event]]:
            await _survey(conn, response_id)  # NotFound
            changed = False
            if score is not None:  # the first score counts
                changed |= bool(
                    rowcount(
                        await conn.execute(
                            "UPDATE survey_responses SET score=$1, answered_at=$2,"
                            " answer_channel=$3, answer_external_id=$4"
                            " WHERE id=$5 AND answered_at IS NULL",
                            score,
                            now,
                            channel,
                            external_id,
                            response_id,
                        )
                    )
                )
            if comment is not None:  # once answered
                changed |= bool(
                    rowcount(
                        await conn.execute(
                            "UPDATE survey_responses SET comment=$1, commented_at=$2 WHERE id=$3"
                            " AND answered_at IS NOT NULL AND comment IS DISTINCT FROM $1",
                            comment,
                            now,
                            response_id,
                        )
                    )
                )
            after = await _survey(conn, response_id)
            if not changed:
                return after, []
            return after, await append_events(
                conn, now, [NewEvent("survey.answered", {"survey": after.to_api()})]
            )

        return await self._tx(op)

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
                args.append(value)
                where.append(f"{column}=${len(args)}")
        if cursor is not None:  # keyset on insertion order
            args.append(cursor)
            where.append(f"seq < (SELECT seq FROM survey_responses WHERE id=${len(args)})")
        sql = f"SELECT {_COLS} FROM survey_responses"
        if where:
            sql += " WHERE " + " AND ".join(where)
        args.append(limit + 1)
        sql += f" ORDER BY seq DESC LIMIT ${len(args)}"

        async def op(conn: Conn) -> tuple[list[SurveyResponse], str | None]:
            rows = [_response(tuple(r)) for r in await conn.fetch(sql, *args)]
            more = len(rows) > limit
            rows = rows[:limit]
            return rows, (rows[-1].id if more and rows else None)

        return await self._read(op)

    async def survey_optout(
        self, contact_id: str, opted_out: bool, via: str, now: float
    ) -> tuple[bool, list[Event]]:
        async def op(conn: Conn) -> tuple[bool, list[Event]]:
            target = await resolve_contact_id(conn, contact_id)
            await _contact_attributes(conn, target)  # NotFound
            if opted_out:
                changed = await conn.fetchval(
                    "INSERT INTO survey_optouts(contact_id, at, via) VALUES ($1, $2, $3)"
                    " ON CONFLICT (contact_id) DO NOTHING RETURNING TRUE",
                    target,
                    now,
                    via,
                )
            else:
                changed = await conn.fetchval(
                    "DELETE FROM survey_optouts WHERE contact_id=$1 RETURNING TRUE", target
                )
            if not changed:
                return False, []
            return True, await append_events(
                conn,
                now,
                [
                    NewEvent(
                        "contact.survey_optout",
                        {"contact_id": target, "opted_out": opted_out, "via": via},
                    )
                ],
            )

        return await self._tx(op)

    async def survey_opted_out(self, contact_id: str) -> float | None:
        async def op(conn: Conn) -> float | None:
            target = await resolve_contact_id(conn, contact_id)
            await _contact_attributes(conn, target)  # NotFound
            at = await conn.fetchval("SELECT at FROM survey_optouts WHERE contact_id=$1", target)
            return None if at is None else float(at)

        return await self._read(op)

    async def contact_set_attributes(
        self, contact_id: str, attributes: dict[str, str | None], now: float
    ) -> tuple[Contact, list[Event]]:
        async def op(conn: Conn) -> tuple[Contact, list[Event]]:
            target = await resolve_contact_id(conn, contact_id)
            # The row is held to the commit: two instances setting different keys at once
            # both keep theirs.
            current = await _contact_attributes(conn, target, lock=True)
            merged = merge_attributes(current, attributes)
            if merged != current:
                await conn.execute(
                    "UPDATE contacts SET attributes=$1, updated_at=$2 WHERE id=$3",
                    dumps(merged),
                    now,
                    target,
                )
            contact = await get_contact(conn, target)
            if merged == current:
                return contact, []
            return contact, await append_events(
                conn,
                now,
                [NewEvent("contact.updated", {"contact_id": contact.id, "attributes": merged})],
            )

        return await self._tx(op)
