"""Entry point: ``python -m bench [--quick] [--json PATH] [--only NAME ...]``. Does I/O.

Builds every registered contender (``bench.registry``), runs every workload at every store
size with ``--repetitions`` time-bounded repetitions per cell, prints the table (medians of
the repetitions, ratios against the baselines) and writes the same as JSON.

- full (default): stores of 1k/10k/100k entries, 5 s per repetition, 3 repetitions, load time
  and memory per entry at every size. Tens of minutes, most of it the file store at 100k.
- ``--quick``: the 10k store only, 0.5 s per repetition, 3 repetitions, so that the peers
  and sessiond's contenders together stay under 2 minutes (about 100 s; the file store's
  8-process cells take ~3 s each whatever the window: its queued lock waiters finish their
  operations after the deadline).

Progress goes to stderr, the table to stdout. Benchmarks never assert on speed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench.placement import POLICIES
from bench.pool import ClientPool
from bench.registry import DEFAULT_BASELINES, build_registry
from bench.report import format_tables, results_json, write_json
from bench.runner import RunConfig, describe_config, run_benchmarks
from bench.workloads import WORKLOADS

DEFAULT_JSON: Final = Path(__file__).resolve().parent / "results" / "latest.json"
FULL_SIZES: Final = [1_000, 10_000, 100_000]
QUICK_SIZES: Final = [10_000]
FULL_DURATION_S: Final = 5.0
QUICK_DURATION_S: Final = 0.5
BUSY_LOAD_AVERAGE: Final = 1.0


def _names(values: list[str] | None) -> list[str]:
    """Accept both ``--only a b`` and ``--only a,b``."""
    return [name for value in values or [] for name in value.split(",") if name]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k store, 0.5 s per repetition")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file")
    parser.add_argument("--only", nargs="+", help="contender names or families (redis, ...)")
    parser.add_argument("--workloads", nargs="+", help=f"subset of {', '.join(WORKLOADS)}")
    parser.add_argument("--sizes", nargs="+", type=int, help="store sizes (entries)")
    parser.add_argument("--duration-s", type=float, help="seconds per repetition")
    parser.add_argument("--repetitions", type=int, default=3, help="per cell; median reported")
    parser.add_argument("--baselines", nargs="+", help="ratio columns (contender names)")
    parser.add_argument(
        "--cpu-policy", choices=POLICIES, default="auto", help="see bench/placement.py"
    )
    parser.add_argument("--no-load", action="store_true", help="skip load time / memory")
    parser.add_argument("--keep-work-dir", action="store_true", help="keep stores and logs")
    parser.add_argument("--list", action="store_true", help="list contenders and workloads")
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace, work_root: Path) -> RunConfig:
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    workloads = _names(args.workloads) or list(WORKLOADS)
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(unknown)}")
    if args.repetitions < 1:
        raise SystemExit("--repetitions must be at least 1")
    return RunConfig(
        sizes=sizes,
        duration_s=args.duration_s or (QUICK_DURATION_S if args.quick else FULL_DURATION_S),
        repetitions=args.repetitions,
        workloads=workloads,
        load_sizes=[] if args.no_load else sizes,
        work_root=work_root,
        cpu_policy=args.cpu_policy,
    )


def _meta(args: argparse.Namespace, config: RunConfig, started: float) -> dict[str, Any]:
    return {
        "mode": "quick" if args.quick else "full",
        "argv": sys.argv,
        "started_unix_s": started,
        "finished_unix_s": time.time(),
        "wall_s": time.time() - started,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_average_start": args.load_average_start,
        "load_average_end": os.getloadavg(),
        "python": sys.version,
        "platform": platform.platform(),
        **describe_config(config),
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    registry = build_registry()
    contenders = registry.select(_names(args.only))
    if args.list or not contenders:
        for contender in registry.contenders:
            print(f"{contender.name:<17} {contender.family:<9} {contender.description}")
        print("workloads:", ", ".join(WORKLOADS))
        for name, reason in registry.skipped.items():
            print(f"skipped {name}: {reason}")
        return 0 if args.list else 2
    for name, reason in registry.skipped.items():
        print(f"skipped {name}: {reason}", file=sys.stderr)
    work_root = Path(tempfile.mkdtemp(prefix="sb-"))  # short: AF_UNIX paths are ~107 bytes
    config = make_config(args, work_root)
    pool_size = max(WORKLOADS[name].task_count for name in config.workloads)
    started = time.time()
    args.load_average_start = os.getloadavg()
    if args.load_average_start[0] > BUSY_LOAD_AVERAGE:
        print(
            f"warning: load average {args.load_average_start[0]:.1f} before the run: the"
            " machine is busy, numbers will be noisy",
            file=sys.stderr,
        )
    pool = ClientPool(pool_size)
    try:
        results = run_benchmarks(config, contenders, pool)
    finally:
        pool.close()
        if not args.keep_work_dir:
            shutil.rmtree(work_root, ignore_errors=True)
    baselines = args.baselines or list(DEFAULT_BASELINES)
    order = [contender.name for contender in contenders]
    meta = _meta(args, config, started) | {
        "contender_order": order,
        "contenders": {contender.name: contender.info() for contender in contenders},
        "skipped": registry.skipped,
        "workload_descriptions": {name: WORKLOADS[name].description for name in config.workloads},
        "baselines": baselines,
    }
    print(format_tables(results, order, baselines))
    write_json(args.json, results_json(results, baselines, meta))
    print(f"\nwall {time.time() - started:.0f} s; JSON: {args.json}", file=sys.stderr)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
