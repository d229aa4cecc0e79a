"""CPU placement of servers and client processes per workload. Does I/O (sched_setaffinity).

Why: on this kind of machine (2 vCPUs of a VM) one request/reply round trip between two
processes costs ~13 us when both run on the same CPU and ~50 us when they run on different
CPUs (the wake-up crosses vCPUs). Unpinned, the scheduler picks one or the other from run to
run, so sequential numbers jump by 3-4x between repetitions. The ``auto`` policy fixes the
placement per workload, identically for every contender:

- one sequential client (``get_seq``, ``patch_seq``): server and client on the same CPU, so
  the number measures the software, not the cross-CPU wake-up;
- one pipelined client (``*_async64``): server on the first CPU, client on the second, so
  both work in parallel as they would on an otherwise idle host;
- several client processes: no pinning at all (the scheduler spreads them, as in real use).

``none`` never pins. Every server process's threads are pinned (Redis and sessiond may run
helper threads), and pinning is undone before the next cell.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Final

from bench.workloads import Workload

__all__ = ["POLICIES", "Placement", "pin_process", "placement_for"]

POLICIES: Final = ("auto", "none")


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
    first, second = frozenset(cpus[:1]), frozenset(cpus[1:2])
    if workload.in_flight > 1:
        return Placement(first, second, "split")
    return Placement(first, first, "same")


def pin_process(pid: int, cpus: frozenset[int]) -> None:
    """Pin every thread of ``pid`` (threads started later inherit their creator's set)."""
    try:
        thread_ids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return
    for thread_id in thread_ids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(thread_id, cpus)
