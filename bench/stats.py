"""Statistics for benchmark cells: percentiles, one repetition's summary, medians. Pure: no I/O.

A *cell* is one (contender, workload, store size). Each repetition of a cell gives one
:class:`RepResult` (aggregate ops/s over the counted client processes, latency percentiles
over all their samples, error and event counts). The reported value of a cell is the
median of its repetitions, taken per metric (ops/s, p50 and p99 are each the median of
their own column, so they may come from different repetitions). Error and event counts
(lock timeouts, lost updates, retries) are totals over all repetitions: one lost update in
any repetition must show.
"""

from __future__ import annotations

import math
import statistics
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CellSummary",
    "RepResult",
    "WorkerResult",
    "percentile",
    "summarise_cell",
    "summarise_rep",
]


@dataclass
class WorkerResult:
    """What one client process measured (sent back over the process pool)."""

    ops: int
    elapsed_s: float
    latencies_ns: bytes
    counted: bool = True
    errors: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    late_start_s: float = 0.0

    def latencies(self) -> array[int]:
        samples: array[int] = array("q")
        samples.frombytes(self.latencies_ns)
        return samples


@dataclass(frozen=True)
class RepResult:
    """One repetition of a cell."""

    ops: int
    elapsed_s: float
    ops_per_s: float
    p50_us: float
    p99_us: float
    max_us: float
    errors: dict[str, int]
    events: dict[str, int]


@dataclass(frozen=True)
class CellSummary:
    """Median over repetitions, plus every repetition for the JSON file."""

    ops_per_s: float
    p50_us: float
    p99_us: float
    errors: dict[str, int]
    events: dict[str, int]
    reps: list[RepResult]
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "ops_per_s": self.ops_per_s,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "errors": self.errors,
            "events": self.events,
            "note": self.note,
            "reps": [rep.__dict__ for rep in self.reps],
        }


def percentile(sorted_samples: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile of already sorted samples; NaN when there are none."""
    if not sorted_samples:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_samples)))
    return float(sorted_samples[rank - 1])


def _sum_counts(maps: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in maps:
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
    return total


def summarise_rep(workers: Sequence[WorkerResult], extra_events: dict[str, int]) -> RepResult:
    """Aggregate the counted workers: total ops over the longest worker's elapsed time.

    Uncounted workers (background writers) contribute their errors and events only.
    """
    counted = [worker for worker in workers if worker.counted]
    samples = sorted(sample for worker in counted for sample in worker.latencies())
    ops = sum(worker.ops for worker in counted)
    elapsed_s = max((worker.elapsed_s for worker in counted), default=0.0)
    return RepResult(
        ops=ops,
        elapsed_s=elapsed_s,
        ops_per_s=ops / elapsed_s if elapsed_s > 0 else 0.0,
        p50_us=percentile(samples, 0.50) / 1_000,
        p99_us=percentile(samples, 0.99) / 1_000,
        max_us=(samples[-1] / 1_000) if samples else math.nan,
        errors=_sum_counts(worker.errors for worker in workers),
        events=_sum_counts([*(worker.events for worker in workers), extra_events]),
    )


def _median(values: Iterable[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return statistics.median(finite) if finite else math.nan


def summarise_cell(reps: Sequence[RepResult], note: str = "") -> CellSummary:
    """Per-metric median of the repetitions; error and event counts are totals over them."""
    return CellSummary(
        ops_per_s=_median(rep.ops_per_s for rep in reps),
        p50_us=_median(rep.p50_us for rep in reps),
        p99_us=_median(rep.p99_us for rep in reps),
        errors=_sum_counts(rep.errors for rep in reps),
        events=_sum_counts(rep.events for rep in reps),
        reps=list(reps),
        note=note,
    )
