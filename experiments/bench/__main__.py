"""Runs the benchmark sections and writes their merged results to one JSON file.

Usage: ``python -m experiments.bench [--quick | --accelerator] [--sections a,b] [--out PATH]``; sections:
sinusoidal, rotary, rotary_nd, relative, literature, compute_once, throughput (all by default). Results go to
``runs/bench/bench.json``; committing them is a deliberate ``--out experiments/results/bench.json``.
Every speed figure is a ratio against a baseline timed in the same run, on the same machine. On an
accelerator, ``python -m experiments.bench.device`` runs every section (and more) in one time-boxed call.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import os
import sys

from experiments.bench.timing import machine

SECTIONS = ("sinusoidal", "rotary", "rotary_nd", "relative", "literature", "compute_once", "throughput")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small shapes (a smoke run, not for reporting)")
    parser.add_argument(
        "--accelerator", action="store_true", help="accelerator-sized shapes (sections that have them)"
    )
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ", ".join(SECTIONS)
    )
    parser.add_argument(
        "--out",
        default="runs/bench/bench.json",
        help="results file, merged per section (the committed one: experiments/results/bench.json)",
    )
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {unknown}; allowed: {', '.join(SECTIONS)}")
    results = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
    for name in sections:
        module = importlib.import_module(f"experiments.bench.{name}")
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        if args.accelerator and "accelerator" in inspect.signature(module.run).parameters:
            section = module.run(quick=args.quick, accelerator=True)
        else:
            section = module.run(quick=args.quick)
        section["_meta"] = {
            "machine": machine(),
            "quick": args.quick,
            "accelerator_shapes": args.accelerator and not args.quick,
            "command": "python -m experiments.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        results[name] = section
        print(json.dumps({name: section}, indent=1, default=float))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=float)
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
