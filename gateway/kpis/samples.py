"""Packed samples: every timed figure's samples kept as arrays, a few hundred per row.

The percentiles by agent, by local day and by hour must be exact and quick over a month of
100,000 conversations. Histograms do not compress there (an agent's or an hour's few
hundred samples fall in as many bins), and reading each sample as a row of `kpi_facts`
costs a database step and a Python tuple per sample (~3 µs: a second for a month's 280,000
timed facts). So the fold also appends each sample, as an 8-byte float, to the row of its
figure and:

- dim `''` (every sample), span = its 15-minute slot (`at // SLOT`): every zone's offset
  is a multiple of 15 minutes, so a local day or hour is a run of whole slots;
- dim `'agent'`, key = the agent (`''`: none), span = its UTC day (`at // DAY`).

A month is then ~24,000 rows by slot (~12,000 by agent) whose arrays are joined and sorted
in C: the same samples as the facts, so the medians and p90s are exact. The period's
ragged ends (part of a slot or day) are read from the facts, as before.

Pure: no I/O. The stores keep the rows (`kpi_samples`: SQLite migration 22, PostgreSQL 12).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

from gateway.kpis.figures import DAY, SLOT, fact_samples

SAMPLE_COLS = "kind, dim, key, span, samples"
# (figure, dim, key, span) → the samples to append, in fold order.
Pending: TypeAlias = "dict[tuple[str, str, str, int], array[float]]"


def sample_accumulate(pending: Pending, row: Sequence[Any]) -> None:
    """Add a timed fact's samples (a `kpi_facts` row, FACT_COLS) to its slot's and its
    agent's day's arrays."""
    at = row[1]
    slot, day, agent = int(at // SLOT), int(at // DAY), row[9] or ""
    for figure, v in fact_samples(row[0], row):
        for key in ((figure, "", "", slot), (figure, "agent", agent, day)):
            found = pending.get(key)
            if found is None:
                pending[key] = array("d", (v,))
            else:
                found.append(v)


def pack(values: array[float]) -> bytes:
    """Little-endian 8-byte floats (the stored form, whatever the machine)."""
    if sys.byteorder == "big":
        values = array("d", values)
        values.byteswap()
    return values.tobytes()


def unpack(blobs: Iterable[bytes]) -> array[float]:
    """The samples of the stored arrays, one after the other."""
    out = array("d", b"".join(blobs))
    if sys.byteorder == "big":
        out.byteswap()
    return out


def sample_rows(pending: Pending) -> list[tuple[str, str, str, int, bytes]]:
    """`kpi_samples` rows (SAMPLE_COLS) whose arrays are to be appended to the stored ones."""
    return [
        (figure, dim, key, span, pack(values))
        for (figure, dim, key, span), values in pending.items()
    ]
