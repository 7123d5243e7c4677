"""The KPIs of `GET /v1/stats`: what each figure means, how facts are bucketed, and how the
figures are computed from what the store's rollups return.

Pure: no I/O. The store (`gateway/store/sqlite/stats.py`) folds the event log into facts
(`kpi_facts`: one row per message, response, resolution ...) and reads them back grouped
by a key; this module turns those groups into figures and renders CSV.

Durations are calendar seconds; first response, next response and resolution also carry
their business seconds (the open time of the queue's calendar between the two stamps,
computed when the fact is folded), reported beside them as `business`.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

Duration = Callable[[float, float], float]
# Business seconds of a queue between two instants (the queue's calendar).
Worktime = Callable[[str, float, float], float]
GroupBy = Literal["channel", "queue", "agent", "day", "hour"]
GROUPS: tuple[str, ...] = ("channel", "queue", "agent", "day", "hour")


def calendar_seconds(a: float, b: float) -> float:
    """Wall-clock seconds from `a` to `b`."""
    return b - a


@dataclass(frozen=True, slots=True)
class TimedFact:
    """A first response or resolution the fold just recorded (for the Prometheus histograms)."""

    kind: str
    seconds: float
    channel: str
    queue: str


# SLA targets (router/sla.py) and the facts of their outcomes: `sla_met_<target>` at the
# instant the target was met, `sla_breached_<target>` at its due time.
SLA_TARGETS = ("first_response", "next_response", "resolution")
SLA_KINDS = tuple(f"sla_{o}_{t}" for o in ("met", "breached") for t in SLA_TARGETS)
# Fact kinds in `kpi_facts` (what the fold writes): counted ones, and the timed ones
# (first_response, next_response, resolved: resolution, handling and awaiting in one row).
COUNTED = (
    "created",
    "in",
    "out",
    "reopened",
    "abandoned",
    "self_served",
    "kb_helpful",
    "kb_unhelpful",
    *SLA_KINDS,
)
# The timed figures with a business-hours variant (`<name>_business` in `Group.timed`).
BUSINESS = ("first_response", "next_response", "resolution")
SLOT = 900  # seconds of a `kpi_slots` count: every zone's offset is a multiple of it
# Counted per slot too: first resolutions, and (not a fact) those that were first-contact.
SLOTTED = (*COUNTED, "first_resolution")

# How exact the medians and p90s are (see HIST_RATIO below).
ACCURACY = (
    " Counts and means are exact. Median and p90 are exact when grouped by agent, day or "
    "hour (in any zone), or filtered by channel; otherwise (totals, by channel or queue) "
    "the whole UTC days of the period come from daily histograms (1-second bins below "
    "64 s, then bins 1 % wider each), exact where the sample at that rank is alone in its "
    "bin or equal to its bin's others, else off by less than its bin's width (under 1 s, "
    "or 1 % of the value)."
)
# Each figure's definition: the API document shows these (gateway/api/schemas.py).
DEFINITIONS: dict[str, str] = {
    "conversations": "Conversations created in the period (a customer's first message).",
    "volume_in": "Customer messages received in the period; by channel: the channel the "
    "message came on; by queue/agent: the conversation's queue and assignee at that moment "
    "(no assignee: key null).",
    "volume_out": "Agent replies queued to customers in the period (automatic replies, bots "
    "and surveys not counted); by agent: the agent who wrote it.",
    "first_response": "Seconds from a conversation's creation to its first agent reply, "
    "one sample per first reply made in the period (median, p90 by nearest rank, mean); "
    "by agent: the agent who replied. `business`: the same samples in business seconds "
    "(only the time the conversation's queue was open by its calendar, `routing.hours`; a "
    "queue without hours is always open), computed when the reply was folded." + ACCURACY,
    "next_response": "Seconds from the first customer message not yet answered (after the "
    "first response) to the agent reply that answers it, one sample per such reply in the "
    "period; `business`: in business seconds, as for first_response." + ACCURACY,
    "resolution": "Seconds from the start of a cycle (the conversation's creation, or its "
    "reopening) to its resolution, one sample per resolution in the period; by agent: the "
    "assignee when resolved; `business`: in business seconds, as for first_response." + ACCURACY,
    "first_contact_resolution": "Among conversations resolved for the first time in the "
    "period: the share resolved with at most one agent reply and never reopened since.",
    "handling": "Seconds from the (latest) assignment to the resolution, per resolution "
    "in the period of an assigned conversation." + ACCURACY,
    "awaiting_agent": "Per resolution in the period: the seconds in that cycle during which "
    "the customer waited for an agent's reply (from an unanswered customer message to the "
    "agent's reply, or to the resolution)." + ACCURACY,
    "reopened": "Conversations reopened in the period (by the customer writing again or by "
    "an agent).",
    "backlog": "Now, whatever the period: conversations not resolved (open, assigned, "
    "pending); `waiting`: those whose latest customer message has no agent reply yet; "
    "`oldest_waiting`: seconds since the oldest such message. Grouped by channel, queue or "
    "agent (current); for day and hour only in the totals.",
    "abandoned": "Webchat visitors who left (their last widget socket closed and stayed "
    "closed for the channel's `abandon_after`) before any agent reply, in the period; "
    "`rate`: abandoned / conversations created in the period.",
    "self_service": "Resolutions in the period (`resolved`, as counted by resolution) "
    "and those done by a bot (the knowledge-base bot, or an external bot answering with "
    "`resolve`) in a conversation no agent ever replied to (`without_agent`); `rate` = "
    'without_agent / resolved. `suggestions`: web chat visitors who answered "did this '
    'answer your question?" under the knowledge-base articles the widget suggested, in the '
    "period — `helpful` (yes: no conversation was opened), `unhelpful` (no: the message went "
    "to the team) and `rate` = helpful / (helpful + unhelpful); by channel (the widget's), "
    "day or hour, not by queue or agent (there is no conversation yet).",
    "csat": "Customer satisfaction (1-5) answered in the period: `percent` = share of "
    "answers 4 or 5, in %.",
    "nps": "Net promoter score (0-10) answered in the period: % promoters (9-10) minus % "
    "detractors (0-6), from -100 to 100.",
    "ces": "Customer effort score (1-7) answered in the period: the mean.",
    "survey_response_rate": "Surveys sent in the period and how many of them were "
    "answered: `rate` = answered / sent.",
    "sla": "SLA targets (`routing.sla`) decided in the period, per target (first_response, "
    "next_response, resolution) and in all: `met` counts a target met by its due time, "
    "at the reply (or resolution) that met it; `breached` a target missed, at its due time "
    "(also when the reply came late); `attainment` = met / (met + breached), null when "
    "none was decided. A target still running is not counted until decided. Each "
    "conversation counts once for first response and resolution (its first resolution or "
    "the breach, whichever comes first), next response once per customer message "
    "answered. By queue/channel/agent: the conversation's at that moment. `breaches`: "
    "the breached count in all.",
}


# --- time buckets -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of the period in which the zone's UTC offset is constant."""

    start: float
    end: float
    offset: int  # seconds east of UTC


def _offset(zone: ZoneInfo, ts: float) -> int:
    delta = datetime.fromtimestamp(ts, zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def segments(start: float, end: float, zone: ZoneInfo) -> list[Segment]:
    """Split [start, end) where the zone's offset changes (daylight saving time): within a
    segment a local day or hour is `floor((t + offset) / size)`."""
    out: list[Segment] = []
    seg_start, off = start, _offset(zone, start)
    t = start
    while t < end:
        nxt = min(t + 3600, end)
        if nxt < end and _offset(zone, nxt) != off:
            lo, hi = t, nxt  # the change lies in (lo, hi]
            while hi - lo > 1:
                mid = (lo + hi) / 2
                if _offset(zone, mid) == off:
                    lo = mid
                else:
                    hi = mid
            hi = math.ceil(hi)
            out.append(Segment(seg_start, hi, off))
            seg_start, off = hi, _offset(zone, hi)
        t = nxt
    out.append(Segment(seg_start, end, off))
    return [s for s in out if s.end > s.start]


def bucket_size(group_by: str) -> int:
    return 86400 if group_by == "day" else 3600


def bucket_label(group_by: str, number: int, offset: int) -> str:
    """A local day `2026-03-29` or hour `2026-03-29T14:00+02:00`."""
    if group_by == "day":
        return (date(1970, 1, 1) + timedelta(days=number)).isoformat()
    local = datetime(1970, 1, 1) + timedelta(hours=number)
    sign = "+" if offset >= 0 else "-"
    hh, mm = divmod(abs(offset) // 60, 60)
    return f"{local:%Y-%m-%dT%H:00}{sign}{hh:02d}:{mm:02d}"


class Buckets:
    """The local days or hours of a period: which one an instant falls in."""

    def __init__(self, group_by: str, start: float, end: float, zone: ZoneInfo) -> None:
        size = bucket_size(group_by)
        self.starts: list[float] = []
        self.labels: list[str] = []
        for seg in segments(start, end, zone):
            first = math.floor((seg.start + seg.offset) / size)
            # The bucket holding the last instant before `end` (exclusive); not `end - 1e-6`,
            # which is `end` itself far from 1970 (a float's step there is larger).
            last = math.ceil((seg.end + seg.offset) / size) - 1
            for n in range(first, last + 1):
                self.starts.append(max(seg.start, n * size - seg.offset))
                self.labels.append(bucket_label(group_by, n, seg.offset))

    def key(self, at: float) -> str:
        return self.labels[max(bisect.bisect_right(self.starts, at) - 1, 0)]

    def all(self) -> list[str]:
        """Every bucket in order, once (a DST day spans two segments)."""
        return list(dict.fromkeys(self.labels))


def all_buckets(group_by: str, start: float, end: float, zone: ZoneInfo) -> list[str]:
    """Every local day or hour the period touches, in order (empty ones too: a chart
    shows a day without traffic as zero)."""
    return Buckets(group_by, start, end, zone).all()


# --- what the store returns -------------------------------------------------------------------
Key = str | None  # a group's key; None: no assignee (by agent), or the totals


@dataclass(slots=True)
class SurveyTally:
    csat_answers: int = 0
    csat_satisfied: int = 0
    nps_answers: int = 0
    nps_promoters: int = 0
    nps_detractors: int = 0
    ces_answers: int = 0
    ces_sum: float = 0.0
    sent: int = 0
    answered: int = 0

    def add(self, other: SurveyTally) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class Backlog:
    open: int = 0
    waiting: int = 0
    oldest_wait_start: float | None = None

    def add(self, other: Backlog) -> None:
        self.open += other.open
        self.waiting += other.waiting
        if other.oldest_wait_start is not None and (
            self.oldest_wait_start is None or other.oldest_wait_start < self.oldest_wait_start
        ):
            self.oldest_wait_start = other.oldest_wait_start


@dataclass(frozen=True, slots=True)
class Summary:
    """The samples of one timed figure in one group (seconds)."""

    count: int
    median: float
    p90: float
    mean: float


@dataclass(slots=True)
class Group:
    """The raw figures of one group (or the totals), as the store read them."""

    counts: dict[str, int] = field(default_factory=dict)
    timed: dict[str, Summary] = field(default_factory=dict)
    resolved_first: int = 0
    first_contact: int = 0
    backlog: Backlog | None = None
    surveys: SurveyTally | None = None


@dataclass(frozen=True, slots=True)
class StatsQuery:
    start: float
    end: float
    group_by: str | None
    zone: ZoneInfo
    now: float
    channel: str | None = None  # only this channel's facts


# --- figures ----------------------------------------------------------------------------------
def ranks(n: int) -> tuple[int, int, int]:
    """1-based ranks of the sorted samples that make the figures: the median is the mean of
    the first two (the same rank twice for an odd count), p90 the third (nearest rank:
    the ⌈0.9·n⌉-th smallest)."""
    return (n + 1) // 2, n // 2 + 1, (9 * n + 9) // 10


def summarize(values: list[float], presorted: bool = False) -> Summary | None:
    """The figures of the samples (sorted already with `presorted`)."""
    if not values:
        return None
    if not presorted:
        values = sorted(values)
    a, b, p = ranks(len(values))
    return Summary(
        len(values), (values[a - 1] + values[b - 1]) / 2, values[p - 1], sum(values) / len(values)
    )


def summary(s: Summary | None) -> dict[str, Any]:
    """count, median, p90, mean — in seconds, null when there is no sample."""
    if s is None or s.count == 0:
        return {"count": 0, "median": None, "p90": None, "mean": None}
    return {
        "count": s.count,
        "median": _round(s.median),
        "p90": _round(s.p90),
        "mean": _round(s.mean),
    }


def _round(x: float) -> float:
    return round(x, 3)


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def figures(g: Group, now: float, with_backlog: bool = True) -> dict[str, Any]:
    counts, timed = g.counts, g.timed
    created = counts.get("created", 0)
    abandoned = counts.get("abandoned", 0)
    out: dict[str, Any] = {
        "conversations": created,
        "volume_in": counts.get("in", 0),
        "volume_out": counts.get("out", 0),
        "first_response": timed_figure(timed, "first_response"),
        "next_response": timed_figure(timed, "next_response"),
        "resolution": timed_figure(timed, "resolution"),
        "first_contact_resolution": {
            "resolved": g.resolved_first,
            "first_contact": g.first_contact,
            "rate": _ratio(g.first_contact, g.resolved_first),
        },
        "handling": summary(timed.get("handling")),
        "awaiting_agent": summary(timed.get("awaiting")),
        "reopened": counts.get("reopened", 0),
        "abandoned": {"count": abandoned, "rate": _ratio(abandoned, created)},
    }
    resolved = timed["resolution"].count if "resolution" in timed else 0
    served = counts.get("self_served", 0)
    helpful, unhelpful = counts.get("kb_helpful", 0), counts.get("kb_unhelpful", 0)
    out["self_service"] = {
        "resolved": resolved,
        "without_agent": served,
        "rate": _ratio(served, resolved),
        "suggestions": {
            "helpful": helpful,
            "unhelpful": unhelpful,
            "rate": _ratio(helpful, helpful + unhelpful),
        },
    }
    if with_backlog:
        b = g.backlog or Backlog()
        out["backlog"] = {
            "open": b.open,
            "waiting": b.waiting,
            "oldest_waiting": None
            if b.oldest_wait_start is None
            else _round(max(0.0, now - b.oldest_wait_start)),
        }
    else:
        out["backlog"] = None
    s = g.surveys or SurveyTally()
    out["csat"] = {
        "responses": s.csat_answers,
        "percent": None
        if not s.csat_answers
        else round(100 * s.csat_satisfied / s.csat_answers, 2),
    }
    out["nps"] = {
        "responses": s.nps_answers,
        "promoters": s.nps_promoters,
        "detractors": s.nps_detractors,
        "score": None
        if not s.nps_answers
        else round(100 * (s.nps_promoters - s.nps_detractors) / s.nps_answers, 2),
    }
    out["ces"] = {
        "responses": s.ces_answers,
        "mean": None if not s.ces_answers else round(s.ces_sum / s.ces_answers, 3),
    }
    out["survey_response_rate"] = {
        "sent": s.sent,
        "answered": s.answered,
        "rate": _ratio(s.answered, s.sent),
    }
    out["sla"] = sla_figure(counts)
    return out


def timed_figure(timed: dict[str, Summary], name: str) -> dict[str, Any]:
    """A timed figure with its business-hours variant."""
    return {**summary(timed.get(name)), "business": summary(timed.get(f"{name}_business"))}


def sla_figure(counts: dict[str, int]) -> dict[str, Any]:
    """Met, breached and attainment per SLA target and in all."""

    def part(met: int, breached: int) -> dict[str, Any]:
        return {"met": met, "breached": breached, "attainment": _ratio(met, met + breached)}

    per = {
        t: part(counts.get(f"sla_met_{t}", 0), counts.get(f"sla_breached_{t}", 0))
        for t in SLA_TARGETS
    }
    met = sum(p["met"] for p in per.values())
    breached = sum(p["breached"] for p in per.values())
    return {**part(met, breached), "breaches": breached, **per}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def report(query: StatsQuery, totals: Group, groups: dict[Key, Group] | None) -> dict[str, Any]:
    """The answer of `/v1/stats`."""
    timed_group = query.group_by in ("day", "hour")
    body: dict[str, Any] = {
        "from": iso(query.start),
        "to": iso(query.end),
        "tz": query.zone.key,
        "group_by": query.group_by,
        "channel": query.channel,
        "generated_at": iso(query.now),
        "totals": figures(totals, query.now),
        "groups": None,
    }
    if groups is not None and query.group_by is not None:
        if timed_group:
            keys: list[Key] = list(all_buckets(query.group_by, query.start, query.end, query.zone))
            keys += [k for k in groups if k not in keys]
        else:
            keys = sorted(groups, key=lambda k: (k is None, k or ""))
        body["groups"] = [
            {"key": k, **figures(groups.get(k, Group()), query.now, not timed_group)} for k in keys
        ]
    return body


# --- histograms (the percentiles of whole days without reading every sample) ----------------
# A timed fact's samples are also counted per UTC day in bins: whole seconds below
# HIST_LINEAR, above it bins HIST_RATIO times wider than the one before (1 %). Each bin keeps
# its count, sum, smallest and largest sample: counts and means stay exact; a median or p90
# read from the bins is exact when its bin holds one value (or equal ones), otherwise
# interpolated between the bin's smallest and largest sample: off by less than the bin's
# width (1 s below 64 s, else 1 % of the value).
HIST_LINEAR = 64
HIST_RATIO = 1.01
_LOG_RATIO = math.log(HIST_RATIO)
DAY = 86400
# The figures of each timed fact kind, and the SQL of each sample in a `kpi_facts` row.
HIST_FIGURES: dict[str, tuple[tuple[str, str], ...]] = {
    "first_response": (("first_response", "at - start"), ("first_response_business", "business")),
    "next_response": (("next_response", "at - start"), ("next_response_business", "business")),
    "resolved": (
        ("resolution", "at - start"),
        ("handling", "at - start2"),
        ("awaiting", "value"),
        ("resolution_business", "business"),
    ),
}
HIST_DIMS = ("", "channel", "queue")  # "": the totals (by agent: gateway/kpis/samples.py)


def hist_bin(v: float) -> int:
    if v < HIST_LINEAR:
        return int(v) if v > 0 else 0
    return HIST_LINEAR + int(math.log(v / HIST_LINEAR) / _LOG_RATIO)


def fact_samples(kind: str, row: Sequence[Any]) -> list[tuple[str, float]]:
    """The (figure, seconds) samples of a `kpi_facts` row (kind, at, seq, start, start2,
    value, conversation, channel, queue, agent, business)."""
    at, start, start2, value, business = row[1], row[3], row[4], row[5], row[10]
    out: list[tuple[str, float]] = []
    if kind in ("first_response", "next_response"):
        out.append((kind, at - start))
        if business is not None:
            out.append((f"{kind}_business", business))
    elif kind == "resolved":
        out.append(("resolution", at - start))
        if start2 is not None:
            out.append(("handling", at - start2))
        if value is not None:
            out.append(("awaiting", value))
        if business is not None:
            out.append(("resolution_business", business))
    return out


class Bin:
    """One histogram bin: count, sum, smallest and largest sample."""

    __slots__ = ("hi", "lo", "n", "total")

    def __init__(self, n: int, total: float, lo: float, hi: float) -> None:
        self.n, self.total, self.lo, self.hi = n, total, lo, hi

    def add(self, n: int, total: float, lo: float, hi: float) -> None:
        self.n += n
        self.total += total
        self.lo = min(self.lo, lo)
        self.hi = max(self.hi, hi)


Hist = dict[int, Bin]


def hist_add(h: Hist, bin_: int, n: int, total: float, lo: float, hi: float) -> None:
    found = h.get(bin_)
    if found is None:
        h[bin_] = Bin(n, total, lo, hi)
    else:
        found.add(n, total, lo, hi)


def hist_summary(h: Hist) -> Summary | None:
    """The figures of the samples a histogram counts (see HIST_RATIO for the accuracy)."""
    bins = sorted(h.items())
    count = sum(b.n for _, b in bins)
    if count == 0:
        return None
    a, b_, p = ranks(count)
    wanted = sorted({a, b_, p})
    found: dict[int, float] = {}
    seen = 0
    i = 0
    for _, b in bins:
        while i < len(wanted) and wanted[i] <= seen + b.n:
            pos = wanted[i] - seen - 1  # 0-based within the bin
            found[wanted[i]] = b.lo if b.n == 1 else b.lo + (b.hi - b.lo) * pos / (b.n - 1)
            i += 1
        seen += b.n
    total = sum(b.total for _, b in bins)
    return Summary(count, (found[a] + found[b_]) / 2, found[p], total / count)


# --- CSV --------------------------------------------------------------------------------------
CSV_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("conversations", ("conversations",)),
    ("volume_in", ("volume_in",)),
    ("volume_out", ("volume_out",)),
    *(
        (f"{name}_{part}", (name, part))
        for name in ("first_response", "next_response", "resolution", "handling", "awaiting_agent")
        for part in ("count", "median", "p90", "mean")
    ),
    *(
        (f"{name}_business_{part}", (name, "business", part))
        for name in BUSINESS
        for part in ("median", "p90", "mean")
    ),
    ("fcr_resolved", ("first_contact_resolution", "resolved")),
    ("fcr_first_contact", ("first_contact_resolution", "first_contact")),
    ("fcr_rate", ("first_contact_resolution", "rate")),
    ("reopened", ("reopened",)),
    ("backlog_open", ("backlog", "open")),
    ("backlog_waiting", ("backlog", "waiting")),
    ("backlog_oldest_waiting", ("backlog", "oldest_waiting")),
    ("abandoned", ("abandoned", "count")),
    ("abandoned_rate", ("abandoned", "rate")),
    ("self_service_resolved", ("self_service", "resolved")),
    ("self_service_without_agent", ("self_service", "without_agent")),
    ("self_service_rate", ("self_service", "rate")),
    ("suggestions_helpful", ("self_service", "suggestions", "helpful")),
    ("suggestions_unhelpful", ("self_service", "suggestions", "unhelpful")),
    ("suggestions_rate", ("self_service", "suggestions", "rate")),
    ("csat_responses", ("csat", "responses")),
    ("csat_percent", ("csat", "percent")),
    ("nps_responses", ("nps", "responses")),
    ("nps", ("nps", "score")),
    ("ces_responses", ("ces", "responses")),
    ("ces_mean", ("ces", "mean")),
    ("surveys_sent", ("survey_response_rate", "sent")),
    ("surveys_answered", ("survey_response_rate", "answered")),
    ("survey_response_rate", ("survey_response_rate", "rate")),
    ("sla_met", ("sla", "met")),
    ("sla_breaches", ("sla", "breaches")),
    ("sla_attainment", ("sla", "attainment")),
    *(
        (f"sla_{t}_{part}", ("sla", t, part))
        for t in SLA_TARGETS
        for part in ("met", "breached", "attainment")
    ),
)


def _dig(figs: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = figs
    for part in path:
        if value is None:
            return None
        value = value.get(part)
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value)


def csv_text(body: dict[str, Any]) -> str:
    """One row per group and a last row `total` (a spreadsheet's pivot source)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    group = body["group_by"] or "group"
    writer.writerow([group, *(name for name, _ in CSV_COLUMNS)])
    rows: list[tuple[str, dict[str, Any]]] = [(_cell(g["key"]), g) for g in (body["groups"] or [])]
    rows.append(("total", body["totals"]))
    for key, figs in rows:
        writer.writerow([_safe(key), *(_cell(_dig(figs, path)) for _, path in CSV_COLUMNS)])
    return buf.getvalue()


def _safe(text: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading quote (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


SURVEY_COLUMNS = (
    "id",
    "conversation_id",
    "contact_id",
    "channel",
    "kind",
    "score",
    "comment",
    "agent_id",
    "queue",
    "sent_at",
    "answered_at",
)


def survey_csv(rows: Iterable[tuple[Any, ...]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(SURVEY_COLUMNS)
    for row in rows:
        cells = list(row)
        for i in (9, 10):  # sent_at, answered_at
            cells[i] = None if cells[i] is None else iso(float(cells[i]))
        writer.writerow([_safe(_cell(c)) for c in cells])
    return buf.getvalue()
