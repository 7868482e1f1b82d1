"""Command line: ``python -m experiments.ordering [--preset quick|long|paper] [overrides]``.

Trains every (task, mode, scheme, learning rate) group of the config, writing each finished group atomically to
``WORKDIR/groups/``; a rerun of the same command skips finished groups. Then writes ``config.json``,
``metrics.jsonl``, ``training.jsonl``, ``summary.json``, ``summary.csv``, figures and ``report.md`` to the
work directory and prints the tables.

Exit status: 0 when every group trained with a finite loss; 2 for a usage error (a setting that cannot run,
an unusable work directory, or a work directory whose groups another run holds: the message names it); 3
when some group's training loss became non-finite (diverged): every output is still written, and the
summary, tables and report name the group, its seeds and the steps where it diverged.
"""

from __future__ import annotations

import os


def _one_device_per_cpu_core() -> None:
    """On CPU, run one XLA host device per core (a power of two, at most 8), so that the data-parallel path
    spreads every batch over the cores; XLA's own threading leaves much of a second core idle for models
    this small. Leaves an explicit setting alone, and has no effect on GPU or TPU devices."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = 1
        while count * 2 <= min(os.cpu_count() or 1, 8):
            count *= 2
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


if __name__ == "__main__":  # before JAX initialises its backends
    _one_device_per_cpu_core()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from experiments.ordering import config as config_lib  # noqa: E402
from experiments.ordering import runner, tasks  # noqa: E402
from experiments.ordering.checkpoint import DEFAULT_CHECKPOINT_STEPS  # noqa: E402
from experiments.ordering.runner import run  # noqa: E402

__all__ = ["main", "build_parser", "parse_args", "run", "config_from_args"]


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.ordering",
        description="Sequence-ordering tasks comparing positional encodings (several seeds, CIs, figures).",
    )
    parser.add_argument(
        "--preset",
        default="quick",
        choices=list(config_lib.PRESETS),
        help="; ".join(f"{name}: {note.split(':')[0]}" for name, note in config_lib.PRESET_NOTES.items()),
    )
    parser.add_argument(
        "--task",
        nargs="+",
        choices=sorted(tasks.TASKS),
        help="tasks to run (with --mode; default: the preset's runs)",
    )
    parser.add_argument(
        "--mode",
        nargs="+",
        choices=tasks.MODES,
        help="modes for --task (default: encoder); alone: the preset's runs in these modes",
    )
    parser.add_argument("--schemes", nargs="+", choices=list(config_lib.SCHEMES))
    parser.add_argument("--seeds", nargs="+", type=int, help="seed list, e.g. --seeds 0 1 2")
    parser.add_argument(
        "--steps", type=int, help="training budget of every run (steps; replaces per-run budgets)"
    )
    parser.add_argument("--check-every", type=int, help="steps between validation checks")
    parser.add_argument(
        "--warmup-steps", type=int, help="steps of learning-rate warm-up (less than the budget)"
    )
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float, nargs="+", help="peak learning rate(s)")
    parser.add_argument("--position-range", type=int, help="randomized positions' range (default 2048)")
    parser.add_argument(
        "--position-draw", choices=config_lib.POSITION_DRAWS, help="randomized positions per example or batch"
    )
    parser.add_argument("--train-length", type=int, help="N: training lengths 1…N")
    parser.add_argument("--test-length", type=int, help="evaluate lengths 1…this")
    parser.add_argument("--test-per-length", type=int)
    parser.add_argument("--validation-per-length", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--heads", type=int)
    parser.add_argument("--workdir", type=Path, help="default: runs/ordering-<preset>")
    parser.add_argument(
        "--compile-cache",
        type=Path,
        help="persistent compilation cache (default: WORKDIR/.jax_cache); none: off",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="K",
        help="checkpoint each group's training state every K steps, so that a killed run loses at most K "
        f"steps (a multiple of --check-every; 0: never; default: about {DEFAULT_CHECKPOINT_STEPS})",
    )
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="time a few training steps of every group and print the projected hours; trains nothing",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="train only shard I of N (0 <= I < N; every N-th group from the I-th) into the shared work "
        "directory, for array jobs; then --merge WORKDIR writes the summary",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        metavar="WORKDIR",
        help="write the summary and report of a sharded run from its finished groups (other options ignored)",
    )
    from experiments.ordering import submit

    submit.add_arguments(parser)
    return parser


def _shard(text: str) -> tuple[int, int]:
    """Parses ``I/N``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N with integers, e.g. 0/4; got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"needs 0 <= I < N; got {text!r}")
    return index, count


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> config_lib.ExperimentConfig:
    """The preset with the command line's overrides."""
    base = config_lib.PRESETS[args.preset]
    overrides: dict[str, Any] = {}
    if args.task:
        modes = args.mode or ("encoder",)
        overrides["runs"] = tuple((t, m) for t in args.task for m in modes)
    elif args.mode:
        overrides["runs"] = tuple(r for r in base.runs if r[1] in args.mode)
    for arg, field in (
        ("schemes", "schemes"),
        ("seeds", "seeds"),
        ("learning_rate", "learning_rates"),
    ):
        if getattr(args, arg):
            overrides[field] = tuple(getattr(args, arg))
    for arg, field in (
        ("steps", "steps"),
        ("check_every", "check_every"),
        ("warmup_steps", "warmup_steps"),
        ("batch_size", "batch_size"),
        ("position_range", "position_range"),
        ("position_draw", "position_draw"),
        ("train_length", "train_max_length"),
        ("test_length", "test_max_length"),
        ("test_per_length", "test_per_length"),
        ("validation_per_length", "validation_per_length"),
    ):
        if getattr(args, arg) is not None:
            overrides[field] = getattr(args, arg)
    model = {}
    for arg, field in (("layers", "num_layers"), ("width", "width"), ("heads", "num_heads")):
        if getattr(args, arg) is not None:
            model[field] = getattr(args, arg)
    if model:
        overrides["model"] = dataclasses.replace(base.model, **model)
    if "steps" in overrides:
        overrides["run_steps"] = ()
        if "check_every" not in overrides:
            # The check interval must divide the budget.
            check = base.check_every
            while overrides["steps"] % check:
                check -= 1
            overrides["check_every"] = check
    return config_lib.preset(args.preset, **overrides)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = " ".join(["python -m experiments.ordering"] + list(sys.argv[1:] if argv is None else argv))
    # A setting that cannot run is a usage error (message and exit code 2), found before anything is written.
    try:
        if args.merge is not None:
            result = runner.merge(args.merge, command=command)
            config, workdir = result["config"], args.merge
        else:
            config = config_from_args(args)
            if args.submit:
                from experiments.ordering import submit

                return submit.launch(args, config, command=command, progress=_progress)
            if args.estimate:
                from experiments.ordering import estimate

                print(estimate.format_estimate(estimate.estimate(config, progress=_progress)))
                return 0
            workdir = args.workdir or Path("runs") / f"ordering-{config.preset}"
            cache = args.compile_cache
            if cache is None:
                cache = workdir / ".jax_cache"
            elif str(cache) == "none":
                cache = None
            result = run(
                config,
                workdir,
                progress=not args.no_progress,
                compile_cache=cache,
                command=command,
                shard=args.shard,
                checkpoint_steps=args.checkpoint_every,
            )
    except ValueError as error:
        parser.error(str(error))
    if result["rows"] is None:
        print(
            f"shard {args.shard[0]}/{args.shard[1]}: {result['trained']} group(s) trained, {result['skipped']} "
            f"already there; once every shard is done: python -m experiments.ordering --merge {workdir}"
        )
        return _diverged_status(result["diverged"])
    from experiments.ordering import report

    for task, mode in config.runs:
        for lr in config.learning_rates:
            print(f"\n{task} ({mode}, lr {lr:g}) per-token accuracy: mean [95% interval] over seeds")
            table = report.format_table(
                config,
                result["rows"],
                result["records"],
                task=task,
                mode=mode,
                learning_rate=lr,
                markdown=False,
            )
            print(table)
    print("\nWhat it shows:")
    print("\n".join(report.findings(config, result["records"], result["summary"]["comparisons"])))
    wall = "" if result.get("wall_seconds") is None else f"wall time {result['wall_seconds']:.0f} s; "
    print(f"\n{wall}outputs in {workdir}/ (report.md, summary.json, …)")
    return _diverged_status(result["diverged"])


#: Exit status of a run in which some group diverged (every output is written).
DIVERGED_STATUS = 3


def _diverged_status(diverged: list[dict[str, Any]]) -> int:
    """0, or (naming every diverged group on stderr) `DIVERGED_STATUS`."""
    if not diverged:
        return 0
    for d in diverged:
        seeds = ", ".join(str(s) for s in d["seeds"])
        first, last = d["first_steps"]
        where = f"step {first}" if first == last else f"steps {first}-{last}"
        print(
            f"DIVERGED: group {d['group']}: training loss not finite from {where} (seeds {seeds})",
            file=sys.stderr,
        )
    print(
        f"{len(diverged)} group(s) diverged; their results are written but marked, and not compared "
        f"(exit status {DIVERGED_STATUS})",
        file=sys.stderr,
    )
    return DIVERGED_STATUS


if __name__ == "__main__":
    raise SystemExit(main())
