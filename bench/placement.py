"""CPU placement of servers and client processes per workload. Does I/O (sched_setaffinity).

Why: on this kind of machine (2 vCPUs of a VM) one request/reply round trip between two
processes costs ~13 us when both run on the same CPU and ~50 us when they run on different
CPUs (the wake-up crosses vCPUs). Unpinned, the scheduler picks one or the other from run to
run, so single-client numbers jump by 3-4x between repetitions. Measured with the floor and
Redis, 64 pipelined requests are also faster on one CPU (floor 210k/s same CPU, 150k/s split,
unpinned flips between the two). The ``auto`` policy fixes the placement per workload,
identically for every contender:

- one client process (``get_seq``, ``patch_seq``, ``*_async64``): the server's process and
  the client on the first CPU, so the number measures the software, not the wake-up;
- several client processes: no pinning at all (the scheduler spreads them, as in real use).

The ``both`` policy runs every single-client cell twice in the same run, pinned as ``auto``
does and unpinned (reported as ``<workload>-unpinned``), so the two stand side by side.

Caveat: every thread of the server process is pinned, including helper threads (Redis's
fsync thread, a flusher thread of sessiond); threads created later inherit the pinning from
their creator. ``--cpu-policy none`` never pins, for comparison. Pinning is undone after
each cell.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Final

from bench.workloads import Workload

__all__ = [
    "POLICIES",
    "UNPINNED_SUFFIX",
    "Placement",
    "cell_variants",
    "pin_process",
    "placement_for",
    "split_variant",
]

POLICIES: Final = ("auto", "none", "both")
UNPINNED_SUFFIX: Final = "-unpinned"


@dataclass(frozen=True)
class Placement:
    """CPU sets for the contender's server processes and for the client processes."""

    server_cpus: frozenset[int]
    client_cpus: frozenset[int]
    label: str


def placement_for(workload: Workload, policy: str, all_cpus: frozenset[int]) -> Placement:
    """Where the server and the clients of ``workload`` run under ``policy``."""
    cpus = sorted(all_cpus)
    if policy == "none" or len(cpus) < 2 or workload.task_count > 1:
        return Placement(all_cpus, all_cpus, "any")
    first = frozenset(cpus[:1])
    return Placement(first, first, "same")


def cell_variants(workload: Workload, policy: str) -> list[str]:
    """The cell names one workload gives under ``policy`` (``both``: a pinned and an
    unpinned cell for single-client workloads)."""
    if policy == "both" and workload.task_count == 1:
        return [workload.name, workload.name + UNPINNED_SUFFIX]
    return [workload.name]


def split_variant(cell_workload: str, policy: str) -> tuple[str, str]:
    """(workload name, placement policy) of a cell name from :func:`cell_variants`."""
    if cell_workload.endswith(UNPINNED_SUFFIX):
        return cell_workload.removesuffix(UNPINNED_SUFFIX), "none"
    return cell_workload, "auto" if policy == "both" else policy


def pin_process(pid: int, cpus: frozenset[int]) -> None:
    """Pin every thread of ``pid`` (threads started later inherit their creator's set)."""
    try:
        thread_ids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return
    for thread_id in thread_ids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(thread_id, cpus)
