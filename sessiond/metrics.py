"""Metrics: request latency histograms, and the Prometheus text exposition of ``stats``.
Pure: no I/O (``sessiond metrics`` prints the text; the daemon writes it to
``metrics_textfile`` for node_exporter's textfile collector).

The text is what Prometheus reads (format 0.0.4): ``# HELP`` and ``# TYPE`` for every
family, ``name{labels} value`` samples, label values escaped, histograms as cumulative
``_bucket{le=...}``, ``_sum`` and ``_count``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["LATENCY_BUCKETS_S", "OpMetrics", "render_prometheus"]

LATENCY_BUCKETS_S: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class OpMetrics:
    """One op's answered requests: counts by reply code, and a latency histogram (counts
    per bucket, not cumulative, and their sum). Recording one costs a few dict and list
    operations: it runs for every request."""

    __slots__ = ("codes", "counts", "sum_s")

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.counts = [0] * (len(LATENCY_BUCKETS_S) + 1)  # the last one is +Inf
        self.sum_s = 0.0

    def observe(self, code: str, seconds: float) -> None:
        codes = self.codes
        codes[code] = codes.get(code, 0) + 1
        self.counts[_bucket_of(LATENCY_BUCKETS_S, seconds)] += 1
        self.sum_s += seconds

    def histogram(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum_s": self.sum_s}


_bucket_of = bisect.bisect_left


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(str(v))}"' for key, v in labels.items()) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        self.lines.append(f"{name}{_labels(labels or {})} {_number(value)}")


def _histogram(text: _Text, name: str, histograms: Mapping[str, Any], label: str) -> None:
    for key, histogram in sorted(histograms.items()):
        cumulative = 0
        counts: Iterable[int] = histogram["counts"]
        for bound, count in zip([*LATENCY_BUCKETS_S, float("inf")], counts, strict=True):
            cumulative += count
            text.sample(f"{name}_bucket", cumulative, {label: key, "le": _number(bound)})
        text.sample(f"{name}_sum", histogram["sum_s"], {label: key})
        text.sample(f"{name}_count", cumulative, {label: key})


STORE_GAUGES: Final = (
    ("entries", "sessiond_store_entries", "Sessions in the store."),
    ("bytes_on_disk", "sessiond_store_file_bytes", "Size of the store file."),
    ("journal_bytes", "sessiond_journal_bytes", "Bytes of journal segments on disk."),
    ("dirty", "sessiond_store_unsaved_changes", "Changes not yet in the store file."),
    ("seq", "sessiond_store_seq", "The store's change sequence number."),
)
STORE_COUNTERS: Final = (
    ("flush_count", "sessiond_snapshots_total", "Snapshots written."),
    ("flush_failures", "sessiond_snapshot_failures_total", "Snapshots that failed."),
    ("journal_fsyncs", "sessiond_journal_fsyncs_total", "Journal fsyncs (group commits)."),
)


def render_prometheus(stats: Mapping[str, Any]) -> str:
    """The Prometheus text exposition of a ``stats`` result."""
    text = _Text()
    text.family("sessiond_up", "gauge", "1 while the daemon serves.")
    text.sample("sessiond_up", 1, {"version": str(stats.get("version", ""))})
    text.family("sessiond_uptime_seconds", "gauge", "Seconds since the daemon started.")
    text.sample("sessiond_uptime_seconds", float(stats.get("uptime_s", 0.0)))
    text.family("sessiond_connections", "gauge", "Open client connections.")
    text.sample("sessiond_connections", stats.get("connections", 0))
    text.family("sessiond_connections_total", "counter", "Connections accepted.")
    text.sample("sessiond_connections_total", stats.get("connections_total", 0))
    text.family(
        "sessiond_connections_refused_total", "counter", "Connections refused (busy, forbidden)."
    )
    text.sample("sessiond_connections_refused_total", stats.get("connections_refused", 0))
    text.family("sessiond_requests_in_flight", "gauge", "Requests read and not yet answered.")
    text.sample("sessiond_requests_in_flight", stats.get("requests_in_flight", 0))
    text.family("sessiond_requests_total", "counter", "Requests answered, by op and code.")
    for op, codes in sorted(stats.get("requests", {}).items()):
        for code, count in sorted(codes.items()):
            text.sample("sessiond_requests_total", count, {"op": op, "code": code})
    text.family(
        "sessiond_replayed_writes_total", "counter", "Writes answered from a request token."
    )
    text.sample("sessiond_replayed_writes_total", stats.get("replayed_writes", 0))
    text.family(
        "sessiond_request_duration_seconds", "histogram", "From reading a request to its reply."
    )
    _histogram(text, "sessiond_request_duration_seconds", stats.get("latency", {}), "op")
    stores: Mapping[str, Mapping[str, Any]] = stats.get("stores", {})
    for field, name, help_text in STORE_GAUGES:
        text.family(name, "gauge", help_text)
        for agent, store in sorted(stores.items()):
            text.sample(name, store.get(field) or 0, {"agent": agent})
    for field, name, help_text in STORE_COUNTERS:
        text.family(name, "counter", help_text)
        for agent, store in sorted(stores.items()):
            text.sample(name, store.get(field) or 0, {"agent": agent})
    text.family("sessiond_snapshot_duration_seconds", "summary", "Time to write a snapshot.")
    for agent, store in sorted(stores.items()):
        labels = {"agent": agent}
        text.sample(
            "sessiond_snapshot_duration_seconds_sum", store.get("flush_seconds_total", 0.0), labels
        )
        text.sample("sessiond_snapshot_duration_seconds_count", store.get("flush_count", 0), labels)
    text.family("sessiond_store_failing", "gauge", "1 while the store's persistence fails.")
    for agent, store in sorted(stores.items()):
        text.sample("sessiond_store_failing", int(bool(store.get("failing"))), {"agent": agent})
    text.family("sessiond_store_unavailable", "gauge", "1 for a store that cannot be served.")
    for agent in sorted(stats.get("unavailable_stores", {})):
        text.sample("sessiond_store_unavailable", 1, {"agent": agent})
    return "\n".join(text.lines) + "\n"
