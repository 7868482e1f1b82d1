"""The device suite: everything measured on one accelerator in one time-boxed call, into one results file.

Usage (one command; ~8 minutes at most on one GPU)::

    python -m experiments.bench.device [--small] [--budget SECONDS] [--out PATH]

Steps, in this order, each in its own process with its own time limit (a step that does not fit in what is
left of ``--budget`` is skipped, one that overruns its limit is stopped, and both are recorded as such):

1. ``environment``: the device (``jax.devices()[0].device_kind``), its platform and count, versions.
2. every section of ``python -m experiments.bench`` (``SECTIONS``) at accelerator-sized shapes
   (``accelerator=True``; the throughput section measures the experiment's own configurations);
3. ``same_numbers``: the encodings on the device against the CPU backend of the same process, in ulps;
4. ``preset_estimates``: the projected wall time of every preset of the ordering experiment, from
   ``python -m experiments.ordering --preset P --estimate`` where the command line offers it, else from the
   throughput section's timed steps;
5. ``accuracy``: ``python -m experiments.accuracy`` on the device, its tables written beside the results file
   (``accuracy_<platform>/``), compared row by row with the committed CPU table;
6. ``pytest``: the test suite with the device as the default backend (the tests that need 8 host devices
   are left out there), stopped at its time limit.

The results file holds every step's output, its status and seconds, and ``goals``: each goal of the project
evaluated as a measured ratio with its limit. Default path: ``$OUT/device_suite_<platform>.json`` when the
environment variable ``OUT`` names a directory (a machine whose ``$OUT`` is copied back), else
``experiments/results/device_suite_<platform>.json``; ``--small`` (CPU-sized shapes, a proof that the
machinery works, not figures to report) appends ``_small`` and keeps the accuracy tables in the work
directory.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments.bench.__main__ import SECTIONS

__all__ = ["main", "evaluate_goals", "STEPS"]

# Step -> (limit on an accelerator, limit with --small), seconds. The limits are maxima: on one H100/H200
# every step is expected to take well under its limit, and the whole suite under the default budget.
STEPS: dict[str, tuple[float, float]] = {
    "environment": (60, 60),
    **{f"bench_{name}": (150 if name == "throughput" else 90, 240) for name in SECTIONS},
    "same_numbers": (90, 60),
    "preset_estimates": (120, 60),
    "accuracy": (60, 120),
    "pytest": (180, 60),
}
_MIN_STEP_SECONDS = 15.0
# Tests that assert 8 host devices as the default backend: they run on CPU, not with an accelerator default.
_HOST_DEVICE_TESTS = ("tests/test_modules_sharded.py", "tests/test_sharding_and_x64.py")


def _environment() -> dict[str, Any]:
    import platform

    import flax
    import jax
    import jaxlib

    device = jax.devices()[0]
    return {
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "cpu_backend_available": bool(jax.devices("cpu")),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def _section(name: str, small: bool) -> dict[str, Any]:
    module = importlib.import_module(f"experiments.bench.{name}")
    if "accelerator" in inspect.signature(module.run).parameters:
        return module.run(quick=small, accelerator=not small)
    return module.run(quick=small)


def _preset_estimates(workdir: Path, throughput: dict[str, Any] | None, limit: float) -> dict[str, Any]:
    """Projected wall time of each preset: the experiment's own ``--estimate``, else from timed steps."""
    from experiments.ordering import config as config_lib

    def size(name: str) -> tuple[int, int, int]:  # steps per group, groups, seeds per group
        config = config_lib.PRESETS[name]
        groups = len(config.groups())
        steps = max(config.steps_for(task, mode) for task, mode in config.runs)
        return steps, groups, len(config.seeds)

    command = [sys.executable, "-m", "experiments.ordering"]
    usage = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60).stdout
    out: dict[str, Any] = {}
    if "--estimate" in usage:
        out["source"] = "python -m experiments.ordering --preset P --estimate"
        deadline = time.monotonic() + limit - 5
        by_cost = sorted(config_lib.PRESETS, key=lambda name: int(np.prod(size(name))), reverse=True)
        for name in by_cost:  # the longest first
            argv = [*command, "--preset", name, "--estimate", "--workdir", str(workdir / f"estimate-{name}")]
            left = deadline - time.monotonic()
            if left < 5:
                out[name] = {"status": "skipped", "reason": "time limit of the step"}
                continue
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=left)
                text = done.stdout + done.stderr
                hours = re.findall(r"(\d+(?:\.\d+)?)\s*(?:h\b|hours?\b)", text)
                out[name] = {"returncode": done.returncode, "output": text[-3000:]}
                if hours:
                    out[name]["projected_hours"] = float(hours[-1])
                    out[name]["projected_hours_from"] = "the last number followed by h/hours in the output"
            except subprocess.TimeoutExpired:
                out[name] = {"status": "timeout", "seconds": left}
        return out
    out["source"] = (
        "projected from the throughput section's timed steps (the experiment's command line has no "
        "--estimate): step time of the measured group x the longest run's steps x groups (runs x schemes x "
        "learning rates); training "
        "steps only (compilation, criterion checks beyond the chunk's and the final evaluation excluded), "
        "every group assumed to cost what the measured sort/encoder group costs"
    )
    if not throughput:
        out["status"] = "not measured: no throughput section result in this run"
        return out
    for key, measured in throughput.items():
        preset = key.removesuffix("_preset")
        if not key.endswith("_preset") or preset not in config_lib.PRESETS or "step_ms" not in measured:
            continue
        steps, groups, seeds = size(preset)
        out[preset] = {
            "step_ms": measured["step_ms"],
            "max_steps": steps,
            "groups": groups,
            "seeds_per_group": seeds,
            "projected_hours": measured["step_ms"] / 1e3 * steps * groups / 3600,
        }
    return out


def _accuracy(out_dir: Path, platform: str) -> dict[str, Any]:
    """``python -m experiments.accuracy`` on this backend, compared row by row with the committed CPU tables.

    Rows are matched by their labels (the non-numeric fields, e.g. dim and position limit); the compared columns
    are posenc_jax's (every error column but the naive float32 baseline's).
    """
    target = out_dir / f"accuracy_{platform}"
    subprocess.run([sys.executable, "-m", "experiments.accuracy", "--out-dir", str(target)], check=True)
    measured = json.loads((target / "accuracy.json").read_text())
    result: dict[str, Any] = {"out_dir": str(target), "tables": measured}
    committed = Path("experiments/results/accuracy.json")
    if not committed.exists():
        return result
    reference = json.loads(committed.read_text())

    def labelled(rows: list[dict]) -> dict[tuple, dict]:
        return {tuple((k, v) for k, v in row.items() if not isinstance(v, float)): row for row in rows}

    excess = []
    for table, rows in measured.items():
        if not (isinstance(rows, list) and isinstance(reference.get(table), list)):
            continue
        cpu_rows = labelled(reference[table])
        for label, row in labelled(rows).items():
            for column, value in row.items():
                cpu_value = cpu_rows.get(label, {}).get(column)
                if isinstance(value, float) and isinstance(cpu_value, float) and not column.startswith("naive"):
                    excess.append(value - cpu_value)
    result["compared_entries"] = len(excess)
    result["max_excess_over_committed_cpu"] = max(excess) if excess else None
    return result


def _pytest(platform: str, limit: float, extra: list[str], output_file: Path) -> dict[str, Any]:
    """The test suite with this backend as the default, its output kept in ``output_file`` even if stopped."""
    env = dict(os.environ)
    if not extra:  # the library's tests first, then its doctests, then the experiments' tests
        tests = sorted(str(path) for path in Path("tests").glob("test_*.py"))
        library = [t for t in tests if not any(w in t for w in ("ordering", "properties", "device", "bench"))]
        extra = [*library, "posenc_jax", *(t for t in tests if t not in library)]
    argv = [sys.executable, "-m", "pytest", "-rfE", "-p", "no:cacheprovider", *extra]
    if platform != "cpu":
        env["JAX_PLATFORMS"] = f"{'cuda' if platform == 'gpu' else platform},cpu"
        # Memory on demand: some tests start processes of their own that need the same device.
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        argv += [f"--ignore={path}" for path in _HOST_DEVICE_TESTS]
    with open(output_file, "w") as stream:
        code = _run_group(argv, limit, stdout=stream, stderr=subprocess.STDOUT, env=env)
    status = f"stopped after {limit:.0f} s" if code is None else ("passed" if code == 0 else f"exit {code}")
    lines = output_file.read_text().splitlines()
    last = next((line for line in reversed(lines) if line.strip()), "")
    return {
        "command": " ".join(["python", *argv[1:]]),
        "default_backend": platform,
        "left_out": list(_HOST_DEVICE_TESTS) if platform != "cpu" else [],
        "pytest_status": status,
        "tally": {kind: int(count) for count, kind in re.findall(r"(\d+) ([a-z]+)", last)},
        "progress": {  # outcomes printed so far (the only tally when the run was stopped)
            mark: sum(
                line.split("[")[0].count(mark)
                for line in lines
                if re.fullmatch(r"[.FEsxX]+ *(\[ *\d+%\])?", line)
            )
            for mark in ".FEsxX"
        },
        "failures": [line for line in lines if line.startswith(("FAILED", "ERROR"))][:50],
        "output_tail": "\n".join(lines[-30:]),
    }


def _step(name: str, args: argparse.Namespace) -> Any:
    """Runs one step in this process (the child of `main`) and returns its JSON-ready result."""
    workdir = Path(args.workdir)
    if name == "environment":
        return _environment()
    if name.startswith("bench_"):
        return _section(name.removeprefix("bench_"), args.small)
    if name == "same_numbers":
        from experiments.bench import same_numbers

        return same_numbers.run(quick=args.small)
    done = json.loads((workdir / "steps.json").read_text())
    platform = done["environment"]["result"]["platform"]
    if name == "preset_estimates":
        throughput = done.get("bench_throughput", {}).get("result")
        return _preset_estimates(workdir, throughput, args.step_limit)
    if name == "accuracy":
        return _accuracy(workdir if args.small else Path(args.out).parent, platform)
    if name == "pytest":
        return _pytest(platform, args.step_limit - 5, args.pytest_args.split(), workdir / "pytest_output.txt")
    raise ValueError(f"device suite: unknown step {name!r}; steps are {list(STEPS)}")


def _get(results: dict[str, Any], *path: str) -> Any:
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def evaluate_goals(steps: dict[str, Any]) -> dict[str, Any]:
    """Every goal of the project as ``{"value", "limit", "met"}``; ``None`` values were not measured.

    Args:
      steps: the suite's ``steps`` (step name -> ``{"status", "result", ...}``).
    """
    result = {name: step.get("result") for name, step in steps.items()}
    goals: dict[str, Any] = {}

    def goal(name: str, value: Any, limit: float, what: str) -> None:
        measured = isinstance(value, int | float)
        goals[name] = {
            "value": value,
            "limit": limit,
            "met": bool(value <= limit) if measured else None,
            "what": what,
        }

    for dtype in ("float32", "bfloat16"):
        copy = _get(result, "bench_sinusoidal", f"table_vs_copy_{dtype}", "ratios_vs_plain_copy") or {}
        for candidate in ("sinusoidal_table", "sinusoidal_arange"):
            goal(
                f"{candidate}_{dtype}_vs_plain_copy",
                copy.get(candidate),
                2.0,
                "time of the encoding / time of a device copy of as many output bytes",
            )
        fused = _get(result, "bench_sinusoidal", f"fused_add_{dtype}") or {}
        goal(
            f"x_plus_sinusoidal_{dtype}_vs_x_plus_table_gather",
            _get(fused, "ratios_vs_precomputed_table", "x_plus_sinusoidal_arange"),
            1.1,
            "x + sinusoidal(arange) / x + table[arange]",
        )
        goal(
            f"x_plus_sinusoidal_row_positions_{dtype}_vs_row_gather",
            fused.get("ratio_row_positions_vs_row_gather"),
            1.1,
            "x + sinusoidal(positions [batch, length]) / x + table[positions]",
        )
        for layout in ("interleaved", "split"):
            goal(
                f"apply_rotary_{layout}_{dtype}_vs_table_rotation",
                _get(result, "bench_rotary", dtype, f"ratio_vs_table_{layout}"),
                1.05,
                "apply_rotary(q), apply_rotary(k) / rotation by precomputed sin/cos tables",
            )
    goal(
        "max_ulps_device_vs_cpu",
        _get(result, "same_numbers", "max_ulps"),
        1,
        "largest difference between the default device's encodings and the CPU's, in ulps",
    )
    goal(
        "accuracy_excess_over_committed_cpu_table",
        _get(result, "accuracy", "max_excess_over_committed_cpu"),
        6e-8,
        "largest (this backend's error - committed CPU error) over the accuracy table's posenc_jax entries",
    )
    hours = _get(result, "preset_estimates", "long", "projected_hours")
    goal("long_preset_projected_hours", hours, 12.0, "projected wall time of --preset long on this device")
    return goals


def _run_group(argv: list[str], limit: float, **kwargs: Any) -> int | None:
    """Runs ``argv`` in a session of its own; returns its exit code, or None if it was stopped at ``limit``.

    Stopping kills the whole process group, so that a stopped process takes its own subprocesses (and the
    device memory they hold) with it.
    """
    child = subprocess.Popen(argv, start_new_session=True, **kwargs)
    try:
        return child.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return None


def _run_child(name: str, args: argparse.Namespace, limit: float, log: Path) -> dict[str, Any]:
    out = Path(args.workdir) / f"{name}.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "experiments.bench.device", "--step", name, "--step-limit", str(limit)]
    argv += ["--workdir", args.workdir, "--out", args.out, f"--pytest-args={args.pytest_args}"]
    argv += ["--small"] if args.small else []
    start = time.monotonic()
    with open(log, "a") as stream:
        stream.write(f"\n=== {name} (limit {limit:.0f} s)\n")
        stream.flush()
        code = _run_group(argv, limit, stdout=stream, stderr=stream)
    if code is None:
        status = f"timeout (stopped after {limit:.0f} s)"
    else:
        status = "ok" if code == 0 and out.exists() else f"failed (exit {code})"
    record: dict[str, Any] = {"status": status, "seconds": round(time.monotonic() - start, 1)}
    if out.exists():
        record["result"] = json.loads(out.read_text())
    elif status.startswith("failed"):
        record["error_tail"] = log.read_text()[-2000:]
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.device", description=__doc__)
    parser.add_argument("--small", action="store_true", help="CPU-sized shapes: the machinery, not figures")
    parser.add_argument("--budget", type=float, help="seconds for all steps (default 480; 600 with --small)")
    parser.add_argument("--out", help="results file (default: see above)")
    parser.add_argument("--workdir", default="runs/device-suite", help="per-step files and the log")
    parser.add_argument("--steps", help="comma-separated subset of: " + ", ".join(STEPS))
    parser.add_argument(
        "--pytest-args",
        help="arguments of the pytest step (default: the suite; tests/test_segments.py with --small)",
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--step-limit", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pytest_args is None:
        args.pytest_args = "tests/test_segments.py" if args.small else ""
    if args.step:
        os.makedirs(args.workdir, exist_ok=True)
        result = _step(args.step, args)
        path = Path(args.workdir) / f"{args.step}.json"
        path.with_suffix(".tmp").write_text(json.dumps(result, indent=1, default=float))
        path.with_suffix(".tmp").replace(path)
        return 0

    names = list(STEPS) if args.steps is None else [s for s in args.steps.split(",") if s]
    unknown = sorted(set(names) - set(STEPS))
    if unknown:
        parser.error(f"--steps: unknown {unknown}; allowed: {', '.join(STEPS)}")
    if "environment" not in names:
        names.insert(0, "environment")
    budget = args.budget if args.budget is not None else (600.0 if args.small else 480.0)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "log.txt"
    log.write_text("")
    args.out = args.out or "(decided after the environment step)"
    started, clock = datetime.datetime.now(datetime.UTC), time.monotonic()
    steps: dict[str, Any] = {}
    for name in names:
        left = budget - (time.monotonic() - clock)
        limit = min(STEPS[name][1 if args.small else 0], left)
        if limit < _MIN_STEP_SECONDS:
            steps[name] = {"status": f"skipped ({left:.0f} s of the budget left)", "seconds": 0.0}
        else:
            print(f"[device suite] {name} (limit {limit:.0f} s) ...", file=sys.stderr, flush=True)
            steps[name] = _run_child(name, args, limit, log)
            print(
                f"[device suite] {name}: {steps[name]['status']}, {steps[name]['seconds']} s", file=sys.stderr
            )
        if name == "environment":
            if "result" not in steps[name]:
                print(log.read_text()[-3000:], file=sys.stderr)
                return 1
            if args.out.startswith("("):
                args.out = str(_default_out(steps[name]["result"]["platform"], args.small))
        (workdir / "steps.json").write_text(json.dumps(steps, indent=1, default=float))
    environment = steps["environment"]["result"]
    results = {
        "device": environment["device_kind"],
        "platform": environment["platform"],
        "small_shapes": args.small,
        "what": "CPU-sized shapes: a check that the suite runs end to end, not figures to report"
        if args.small
        else "accelerator-sized shapes",
        "command": "python -m experiments.bench.device " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": started.isoformat(timespec="seconds"),
        "budget_s": budget,
        "wall_s": round(time.monotonic() - clock, 1),
        "environment": environment,
        "goals_apply": "no: CPU-sized shapes show that the goals are evaluated, not whether they are met"
        if args.small
        else "yes: measured at the goals' shapes",
        "goals": evaluate_goals(steps),
        "preset_projected_hours": {
            name: estimate.get("projected_hours")
            for name, estimate in (_get(steps, "preset_estimates", "result") or {}).items()
            if isinstance(estimate, dict)
        },
        "steps": steps,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(json.dumps({"results": str(out), "wall_s": results["wall_s"], "goals": results["goals"]}, indent=1))
    return 0


def _default_out(platform: str, small: bool) -> Path:
    name = f"device_suite_{platform}{'_small' if small else ''}.json"
    if os.environ.get("OUT") and os.path.isdir(os.environ["OUT"]):
        return Path(os.environ["OUT"]) / name
    return Path("experiments/results") / name


if __name__ == "__main__":
    raise SystemExit(main())
