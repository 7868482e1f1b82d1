"""Checks the claims about sinusoidal encodings: figures, ``numbers.json`` and ``properties.md``.

Usage: ``python -m experiments.properties [--workdir DIR] [--preset default|quick] [--ordering-summary PATH]``.
"""

from __future__ import annotations

import argparse
import sys

from experiments.properties.report import PRESETS, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.properties", description=__doc__)
    parser.add_argument("--workdir", default="runs/properties", help="output directory (default: %(default)s)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="sizes (quick: smoke run)")
    parser.add_argument(
        "--ordering-summary",
        default=None,
        help="summary.json of the ordering experiments (default: experiments/results/ordering/summary.json)",
    )
    args = parser.parse_args(argv)
    numbers = run(args.workdir, preset=args.preset, ordering_summary=args.ordering_summary)
    maps, sim, unique = numbers["offset_maps"], numbers["similarity"], numbers["uniqueness"]
    print(
        f"offset maps: max residual {maps['max_residual']:.2e}, max block error {maps['max_block_error']:.2e}"
    )
    print(f"similarity: max spread at equal distance {sim['max_spread_at_equal_distance']:.2e}")
    for entry in unique["per_dim"]:
        print(
            f"uniqueness d={entry['dim']}: min distance {entry['min_distance'][-1]:.3g} "
            f"(L={unique['max_length']}), distinct bfloat16 {entry['distinct_bfloat16']}"
        )
    print(f"extrapolation: {numbers['extrapolation']['status']}")
    print(f"wrote {args.workdir}/properties.md, numbers.json and figures in {numbers['meta']['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
