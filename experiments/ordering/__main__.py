"""Command line: ``python -m experiments.ordering [--preset quick|long|paper] [overrides]``.

Trains every (task, mode, scheme, learning rate) group of the config, writing each finished group atomically to
``WORKDIR/groups/``; a rerun of the same command skips finished groups. Then writes ``config.json``,
``metrics.jsonl``, ``training.jsonl``, ``summary.json``, ``summary.csv``, figures and ``report.md`` to the
work directory and prints the tables.
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
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from experiments.ordering import config as config_lib  # noqa: E402
from experiments.ordering import tasks  # noqa: E402

__all__ = ["main", "parse_args", "run", "config_from_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


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


def _group_path(workdir: Path, group: config_lib.Group) -> Path:
    return workdir / "groups" / f"{group.name}.json"


def run(
    config: config_lib.ExperimentConfig,
    workdir: Path,
    *,
    progress: bool = True,
    compile_cache: Path | None = None,
    command: str = "python -m experiments.ordering",
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) the experiment of ``config`` in ``workdir`` and writes every output.

    Args:
      config: the experiment.
      workdir: output directory; finished groups found there are reused.
      progress: show progress bars.
      compile_cache: persistent compilation cache directory, or ``None``.
      command: the command line, for the report.
      stop_after: train at most this many new groups, then return without the final outputs (for tests
        of resuming).

    Returns:
      ``{"records", "rows", "wall_seconds", "trained", "skipped"}``.

    Raises:
      ValueError: if ``workdir`` holds a run of another config, or a group trained on another device count.
    """
    import jax

    from experiments.ordering import figures, report, summary, train

    if compile_cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(compile_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.json"
    config_json = config.to_json()
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if previous != config_json:
            raise ValueError(
                f"run(workdir={str(workdir)!r}): the directory holds results of a different config; "
                "rerun with the same options to resume, or choose another --workdir"
            )
    else:
        summary.atomic_write(config_path, json.dumps(config_json, indent=1))

    mesh = train.make_mesh()
    started = time.perf_counter()
    records, trained, skipped = [], 0, 0
    groups = config.groups()
    for number, group in enumerate(groups, 1):
        path = _group_path(workdir, group)
        fingerprint = config.group_fingerprint(group, mesh.size)
        if path.exists():
            record = json.loads(path.read_text())
            if record.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"run(workdir={str(workdir)!r}): group {path.name} was trained with another config or "
                    f"device count (now {mesh.size}); choose another --workdir"
                )
            records.append(record)
            skipped += 1
            continue
        if stop_after is not None and trained >= stop_after:
            return {
                "records": records,
                "rows": None,
                "summary": None,
                "wall_seconds": None,
                "trained": trained,
                "skipped": skipped,
            }
        setup = train.setup_group(config, group, mesh)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=setup.steps,
                desc=f"[{number}/{len(groups)}] {group.name}",
                file=sys.stderr,
                leave=True,
                dynamic_ncols=True,
            )

        def show(step, losses, accuracies, bar=bar):
            if bar is not None:
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{losses.mean():.3f}", acc=f"{accuracies.mean():.3f}")

        record = train.train_group(setup, progress=show)
        if bar is not None:
            bar.close()
        record["fingerprint"] = fingerprint
        summary.atomic_write(path, json.dumps(record))
        records.append(record)
        trained += 1

    wall = time.perf_counter() - started
    # Wall time of the whole run, resumed parts included (each group's own time is in its record).
    total = sum(r["compile_seconds"] + r["train_seconds"] + r["test_seconds"] for r in records)
    device = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    extra = {
        "command": command,
        "wall_seconds_this_invocation": wall,
        "wall_seconds": wall if skipped == 0 else total,
        "group_seconds_total": total,
        "device": f"{device.platform} ({getattr(device, 'device_kind', '')}; host {cpu}, "
        f"{os.cpu_count()} cores)",
        "device_count": mesh.size,
        "groups_trained_now": trained,
        "groups_resumed": skipped,
        "jax_version": jax.__version__,
    }
    summary.write_metrics(workdir, records)
    result = summary.write_summary(workdir, config, records, extra)
    names = figures.write_figures(workdir, config, records)
    report.write_report(workdir, config, records, result, names)
    return {
        "records": records,
        "rows": result["rows"],
        "summary": result,
        "wall_seconds": wall,
        "trained": trained,
        "skipped": skipped,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_from_args(args)
    workdir = args.workdir or Path("runs") / f"ordering-{config.preset}"
    cache = args.compile_cache
    if cache is None:
        cache = workdir / ".jax_cache"
    elif str(cache) == "none":
        cache = None
    command = " ".join(["python -m experiments.ordering"] + list(sys.argv[1:] if argv is None else argv))
    result = run(config, workdir, progress=not args.no_progress, compile_cache=cache, command=command)
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
    print(f"\nwall time {result['wall_seconds']:.0f} s; outputs in {workdir}/ (report.md, summary.json, …)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
