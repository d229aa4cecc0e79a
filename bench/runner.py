"""The benchmark run loop: set up contenders, run every cell's repetitions, collect results.
Does I/O (directories, server processes through the contenders, the client pool).

Order, chosen against a noisy shared machine: for each store size, every contender is set
up, then repetition 1 of every (workload, contender) cell runs, then repetition 2, and so
on, so slow drifts in background load spread over all contenders instead of hitting one.
Size-independent contenders (the floor) run at the first size only; their cells are reused,
marked, at the other sizes. A contender whose setup or repetition fails is reported with the
error and the run goes on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.contender import ClientFactory, Contender, LoadResult
from bench.entries import COUNTER_FIELD, COUNTER_KEY
from bench.placement import cell_variants, pin_process, placement_for, split_variant
from bench.pool import ClientPool
from bench.stats import CellSummary, RepResult, WorkerResult, summarise_cell, summarise_rep
from bench.workloads import WORKLOADS, WorkerTask, Workload

__all__ = ["CellKey", "LoadSummary", "RunConfig", "RunResults", "run_benchmarks"]

READY_TIMEOUT_S: Final = 180.0
OVERRUN_ALLOWANCE_S: Final = 180.0
LATE_WARNING_S: Final = 0.01


@dataclass(frozen=True)
class RunConfig:
    sizes: list[int]
    duration_s: float
    repetitions: int
    workloads: list[str]
    load_sizes: list[int]
    work_root: Path
    cpu_policy: str = "auto"
    all_cpus: frozenset[int] = field(default_factory=lambda: frozenset(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class CellKey:
    contender: str
    workload: str
    store_size: int


@dataclass(frozen=True)
class LoadSummary:
    load_time_s: float
    bytes_per_entry: float | None
    reps: list[LoadResult]
    details: dict[str, float] = field(default_factory=dict)
    """Medians of the numeric details the contender reported (file size, decode time...)."""


@dataclass
class RunResults:
    cells: dict[CellKey, CellSummary] = field(default_factory=dict)
    loads: dict[tuple[str, int], LoadSummary] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmarks(
    config: RunConfig, contenders: Sequence[Contender], pool: ClientPool
) -> RunResults:
    results = RunResults()
    for index, store_size in enumerate(config.sizes):
        active = [c for c in contenders if index == 0 or not c.size_independent]
        _run_size(config, active, pool, store_size, results)
        _reuse_size_independent(config, contenders, store_size, results)
    for store_size in config.load_sizes:
        for contender in contenders:
            _measure_loads(config, contender, store_size, results)
    return results


def _run_size(
    config: RunConfig,
    contenders: Sequence[Contender],
    pool: ClientPool,
    store_size: int,
    results: RunResults,
) -> None:
    size_run = _SizeRun(config, pool, store_size, results)
    try:
        for contender in contenders:
            size_run.setup(contender)
        for repetition in range(config.repetitions):
            size_run.run_round(contenders, repetition)
    finally:
        for contender in contenders:
            _teardown(contender)
    size_run.summarise(contenders)


@dataclass
class _SizeRun:
    """The contenders set up for one store size and the repetitions measured on them."""

    config: RunConfig
    pool: ClientPool
    store_size: int
    results: RunResults
    factories: dict[str, ClientFactory] = field(default_factory=dict)
    contenders: dict[str, Contender] = field(default_factory=dict)
    reps: dict[CellKey, list[RepResult]] = field(default_factory=dict)

    def setup(self, contender: Contender) -> None:
        work_dir = self.config.work_root / f"{contender.name}-{self.store_size}"
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        started = time.perf_counter()
        try:
            self.factories[contender.name] = contender.setup(self.store_size, work_dir)
            self.contenders[contender.name] = contender
        except Exception as exc:
            self.results.failures[f"{contender.name}@{self.store_size}"] = f"setup: {exc!r}"
            log(f"[{self.store_size}] {contender.name}: setup failed: {exc!r}")
            _teardown(contender)
            return
        elapsed_s = time.perf_counter() - started
        log(f"[{self.store_size}] {contender.name}: ready in {elapsed_s:.1f} s")

    def cells(self, contenders: Sequence[Contender]) -> list[CellKey]:
        return [
            CellKey(contender.name, variant, self.store_size)
            for workload in self.config.workloads
            for variant in cell_variants(WORKLOADS[workload], self.config.cpu_policy)
            for contender in contenders
            if contender.name in self.factories and workload in contender.workloads
        ]

    def run_round(self, contenders: Sequence[Contender], repetition: int) -> None:
        """One repetition of every cell, workload by workload, contenders interleaved."""
        for key in self.cells(contenders):
            rep = self.run_rep(key, repetition)
            if rep is not None:
                self.reps.setdefault(key, []).append(rep)

    def run_rep(self, key: CellKey, repetition: int) -> RepResult | None:
        name, policy = split_variant(key.workload, self.config.cpu_policy)
        workload = WORKLOADS[name]
        where = placement_for(workload, policy, self.config.all_cpus)
        contender = self.contenders[key.contender]
        server_pids = contender.server_pids()
        try:
            contender.quiesce()
            for pid in server_pids:
                pin_process(pid, where.server_cpus)
            rep = run_repetition(
                self.pool,
                self.factories[key.contender],
                workload,
                store_size=self.store_size,
                duration_s=self.config.duration_s,
                repetition=repetition,
                client_cpus=where.client_cpus,
            )
        except Exception as exc:
            self.results.failures[f"{key.contender}/{key.workload}@{key.store_size}"] = repr(exc)
            log(f"[{key.store_size}] rep {repetition + 1} {key.workload} {key.contender}: {exc!r}")
            return None
        finally:
            for pid in server_pids:
                pin_process(pid, self.config.all_cpus)
        errors = f" errors={rep.errors}" if rep.errors else ""
        log(
            f"[{key.store_size}] rep {repetition + 1} {key.workload:<17} {key.contender:<16}"
            f" {rep.ops_per_s:>10.1f} ops/s  p99 {rep.p99_us:>10.1f} us{errors}"
        )
        return rep

    def summarise(self, contenders: Sequence[Contender]) -> None:
        for key in self.cells(contenders):
            if key in self.reps:
                self.results.cells[key] = summarise_cell(self.reps[key])


def _teardown(contender: Contender) -> None:
    try:
        contender.teardown()
    except Exception as exc:
        log(f"{contender.name}: teardown failed: {exc!r}")


def run_repetition(
    pool: ClientPool,
    factory: ClientFactory,
    workload: Workload,
    *,
    store_size: int,
    duration_s: float,
    repetition: int,
    client_cpus: frozenset[int] | None = None,
) -> RepResult:
    """One repetition of one cell (the lost-update check wraps the counter workload)."""
    tasks = [
        WorkerTask(
            factory=factory,
            workload=workload.name,
            op=workload.op if index < workload.processes else "patch",
            in_flight=workload.in_flight if index < workload.processes else 1,
            store_size=store_size,
            duration_s=duration_s,
            seed=1000 * repetition + index,
            counted=index < workload.processes,
            cpus=client_cpus,
        )
        for index in range(workload.task_count)
    ]
    if workload.op == "counter":
        _reset_counter(factory)
    workers = pool.run(tasks, timeout_s=READY_TIMEOUT_S + duration_s + OVERRUN_ALLOWANCE_S)
    late_s = max(worker.late_start_s for worker in workers)
    if late_s > LATE_WARNING_S:
        log(f"warning: a client process started {late_s * 1000:.0f} ms late")
    extra = _lost_updates(factory, workers) if workload.op == "counter" else {}
    return summarise_rep(workers, extra)


def _reset_counter(factory: ClientFactory) -> None:
    ops = factory.open_sync()
    try:
        ops.patch(COUNTER_KEY, {COUNTER_FIELD: 0})
    finally:
        ops.close()


def _lost_updates(factory: ClientFactory, workers: Sequence[WorkerResult]) -> dict[str, int]:
    """Increments the workers saw succeed minus what the stored counter shows."""
    ops = factory.open_sync()
    try:
        entry = ops.read_entry(COUNTER_KEY) or {}
    finally:
        ops.close()
    succeeded = sum(worker.ops for worker in workers if worker.counted)
    stored = int(entry.get(COUNTER_FIELD) or 0)
    return {"increments": succeeded, "lost_updates": succeeded - stored}


def _reuse_size_independent(
    config: RunConfig, contenders: Sequence[Contender], store_size: int, results: RunResults
) -> None:
    first_size = config.sizes[0]
    for contender in contenders:
        if not contender.size_independent or store_size == first_size:
            continue
        for workload in config.workloads:
            source = results.cells.get(CellKey(contender.name, workload, first_size))
            if source is not None:
                reused = CellSummary(**{**source.__dict__, "note": f"measured at {first_size}"})
                results.cells[CellKey(contender.name, workload, store_size)] = reused


def _measure_loads(
    config: RunConfig, contender: Contender, store_size: int, results: RunResults
) -> None:
    measured: list[LoadResult] = []
    for repetition in range(config.repetitions):
        work_dir = config.work_root / f"load-{contender.name}-{store_size}-{repetition}"
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = contender.measure_load(store_size, work_dir)
        except Exception as exc:
            results.failures[f"{contender.name}/load@{store_size}"] = repr(exc)
            log(f"[{store_size}] load {contender.name}: {exc!r}")
            return
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(work_dir)
        if result is None:
            return
        measured.append(result)
        log(f"[{store_size}] load {contender.name}: {result.load_time_s:.3f} s")
    results.loads[(contender.name, store_size)] = _summarise_loads(measured)


def _summarise_loads(measured: list[LoadResult]) -> LoadSummary:
    per_entry = [r.bytes_per_entry for r in measured if r.bytes_per_entry is not None]
    names = {name for r in measured for name, value in r.details.items() if _numeric(value)}
    details = {
        name: statistics.median(r.details[name] for r in measured if name in r.details)
        for name in sorted(names)
    }
    return LoadSummary(
        load_time_s=statistics.median(r.load_time_s for r in measured),
        bytes_per_entry=statistics.median(per_entry) if per_entry else None,
        reps=measured,
        details=details,
    )


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def describe_config(config: RunConfig) -> dict[str, Any]:
    return {
        "sizes": config.sizes,
        "duration_s": config.duration_s,
        "repetitions": config.repetitions,
        "workloads": config.workloads,
        "load_sizes": config.load_sizes,
        "cpu_policy": config.cpu_policy,
        "cpus": sorted(config.all_cpus),
    }
