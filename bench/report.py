"""Benchmark output: the printed table and the JSON results file. Writes files and stdout.

Ratio columns divide a row's ops/s by the ops/s of each baseline contender in the same
workload and store size (">1" means faster than that baseline); the JSON also has the p99
ratio (row p99 / baseline p99, "<1" means a better tail). Error columns show totals over
all repetitions: ``LockTimeout`` (the original's dropped operations), ``lost_updates`` (the
counter workload), ``watch_conflicts`` (Redis optimistic-transaction retries).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.placement import UNPINNED_SUFFIX
from bench.runner import CellKey, RunResults
from bench.stats import CellSummary
from bench.workloads import WORKLOADS

__all__ = ["format_tables", "results_json", "write_json"]

ALWAYS_SHOWN_EVENTS: Final = ("lost_updates", "lock_timeouts")
NONZERO_SHOWN_EVENTS: Final = ("watch_conflicts", "stale_evictions")
ERRORS_SHOWN_AS_EVENTS: Final = {"LockTimeout": "lock_timeouts"}


def _ratio(numerator: float, denominator: float) -> float:
    if denominator <= 0 or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return numerator / denominator


def ratios(results: RunResults, key: CellKey, baselines: Sequence[str]) -> dict[str, Any]:
    cell = results.cells[key]
    found: dict[str, Any] = {}
    for baseline in baselines:
        other = results.cells.get(CellKey(baseline, key.workload, key.store_size))
        if other is not None:
            found[baseline] = {
                "ops_ratio": _ratio(cell.ops_per_s, other.ops_per_s),
                "p99_ratio": _ratio(cell.p99_us, other.p99_us),
            }
    return found


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 100_000:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _fmt_ratio(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _notes(cell: CellSummary) -> str:
    parts = [
        f"{name}={count}"
        for name, count in cell.errors.items()
        if ERRORS_SHOWN_AS_EVENTS.get(name) not in cell.events
    ]
    parts += [f"{name}={cell.events[name]}" for name in ALWAYS_SHOWN_EVENTS if name in cell.events]
    parts += [
        f"{name}={cell.events[name]}" for name in NONZERO_SHOWN_EVENTS if cell.events.get(name)
    ]
    if cell.note:
        parts.append(cell.note)
    return " ".join(parts)


def _ordered_keys(results: RunResults, contender_order: Sequence[str]) -> list[CellKey]:
    workload_order = list(WORKLOADS)
    return sorted(
        results.cells,
        key=lambda k: (
            k.store_size,
            workload_order.index(k.workload.removesuffix(UNPINNED_SUFFIX)),
            k.workload.endswith(UNPINNED_SUFFIX),
            contender_order.index(k.contender) if k.contender in contender_order else 99,
        ),
    )


def format_tables(
    results: RunResults, contender_order: Sequence[str], baselines: Sequence[str]
) -> str:
    """The throughput/latency table, then the load table and any failures."""
    shown = [b for b in baselines if any(k.contender == b for k in results.cells)]
    widths = [max(len(b), 6) for b in shown]
    header = f"{'size':>7} {'workload':<17} {'contender':<17} {'ops/s':>10} {'p50 us':>10}"
    header += f" {'p99 us':>10}" + "".join(f" {b:>{w}}" for b, w in zip(shown, widths, strict=True))
    header += "  notes"
    lines = [
        "ops/s: all counted clients together; ratio columns: ops/s / ops/s of that contender",
        header,
        "-" * len(header),
    ]
    previous: tuple[int, str] | None = None
    for key in _ordered_keys(results, contender_order):
        if previous is not None and previous != (key.store_size, key.workload):
            lines.append("")
        previous = (key.store_size, key.workload)
        cell = results.cells[key]
        row_ratios = ratios(results, key, shown)
        ratio_text = "".join(
            f" {_fmt_ratio(row_ratios[b]['ops_ratio']) if b in row_ratios else '':>{w}}"
            for b, w in zip(shown, widths, strict=True)
        )
        lines.append(
            f"{key.store_size:>7} {key.workload:<18} {key.contender:<17}"
            f" {_fmt(cell.ops_per_s):>10} {_fmt(cell.p50_us):>10} {_fmt(cell.p99_us):>10}"
            f"{ratio_text}  {_notes(cell)}"
        )
    lines += _load_lines(results) + _failure_lines(results)
    return "\n".join(lines)


def _load_lines(results: RunResults) -> list[str]:
    if not results.loads:
        return []
    lines = [
        "",
        f"{'size':>7} {'contender':<17} {'load s':>10} {'bytes/entry':>12}"
        f" {'file MB':>9} {'msgspec s':>10} {'rss/file':>9}",
    ]
    for (name, store_size), load in sorted(results.loads.items(), key=lambda i: i[0][::-1]):
        per_entry = "-" if load.bytes_per_entry is None else f"{load.bytes_per_entry:,.0f}"
        details = load.details
        file_mb = f"{details['file_bytes'] / 1e6:.1f}" if "file_bytes" in details else "-"
        decode_s = f"{details['msgspec_decode_s']:.3f}" if "msgspec_decode_s" in details else "-"
        ratio = f"{details['rss_over_file']:.2f}" if "rss_over_file" in details else "-"
        lines.append(
            f"{store_size:>7} {name:<17} {load.load_time_s:>10.3f} {per_entry:>12}"
            f" {file_mb:>9} {decode_s:>10} {ratio:>9}"
        )
    return lines


def _failure_lines(results: RunResults) -> list[str]:
    if not results.failures:
        return []
    return ["", "FAILED:", *(f"  {name}: {error}" for name, error in results.failures.items())]


def results_json(
    results: RunResults, baselines: Sequence[str], meta: dict[str, Any]
) -> dict[str, Any]:
    cells = [
        {
            "contender": key.contender,
            "workload": key.workload,
            "store_size": key.store_size,
            **results.cells[key].to_json(),
            "ratios": ratios(results, key, baselines),
        }
        for key in _ordered_keys(results, list(meta.get("contender_order", [])))
    ]
    loads = [
        {
            "contender": name,
            "store_size": store_size,
            "load_time_s": load.load_time_s,
            "bytes_per_entry": load.bytes_per_entry,
            "reps": [rep.__dict__ for rep in load.reps],
        }
        for (name, store_size), load in results.loads.items()
    ]
    return {"meta": meta, "cells": cells, "loads": loads, "failures": results.failures}


def _finite(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(document), indent=2, default=str) + "\n")
