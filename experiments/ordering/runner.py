"""Running an experiment in a work directory: validation, groups, resuming, shards and the final outputs.

Layout of the work directory: ``config.json``; ``groups/<group>.json`` (one finished group, written
atomically); ``logs/<group>.jsonl`` (one line per chunk, appended as training goes); ``checkpoints/<group>/``
(the latest training states of an unfinished group, with their content hashes); ``locks/<group>.lock``
(:mod:`experiments.ordering.locks`); then the outputs of `write_outputs`. Every setting is checked before
anything is written, so a run that fails at set-up leaves no trace.

A run holds the locks of the groups it trains or reads (a plain run and `merge`: all), so a second run of
the same groups stops at once naming the first; it then removes what an interrupted run left behind
(temporary files, Orbax's temporary directories). The outputs are written in configuration order from the
groups' records, so they are byte-identical whatever the history of the directory, apart from the run
facts that time it (``summary.json``'s ``run`` and ``*_seconds`` fields, the report's first line).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.ordering import config as config_lib
from experiments.ordering import locks
from experiments.ordering.checkpoint import GroupCheckpoints, checkpoint_every, json_safe

__all__ = [
    "config_differences",
    "shard_groups",
    "prepare",
    "run",
    "merge",
    "write_outputs",
]


def config_differences(saved: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The settings that differ between two configs' JSON, as ``"name: saved → new"`` lines.

    >>> config_differences({"steps": 10, "model": {"width": 8}}, {"steps": 20, "model": {"width": 8}})
    ['steps: 10 → 20']
    """
    lines = []
    for key in sorted(set(saved) | set(new)):
        old, now = saved.get(key, "(absent)"), new.get(key, "(absent)")
        if isinstance(old, dict) and isinstance(now, dict):
            lines += config_differences(old, now, f"{prefix}{key}.")
        elif old != now:
            lines.append(f"{prefix}{key}: {json.dumps(old)} → {json.dumps(now)}")
    return lines


def shard_groups(groups: list[config_lib.Group], shard: tuple[int, int] | None) -> list[config_lib.Group]:
    """The groups of shard ``(index, count)``: every ``count``-th group from the ``index``-th (0-based), so
    that the shards of an array job partition the groups, each the same on every machine.

    Raises:
      ValueError: unless ``0 <= index < count``.
    """
    if shard is None:
        return list(groups)
    index, count = shard
    if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
        raise ValueError(f"shard_groups(shard={index}/{count}): needs 0 <= index < count")
    return [g for i, g in enumerate(groups) if i % count == index]


def prepare(
    config: config_lib.ExperimentConfig, workdir: Path, device_count: int, *, write: bool = True
) -> None:
    """Checks every setting and the work directory, then writes (or checks) ``config.json``.

    Args:
      config: the experiment.
      workdir: its work directory.
      device_count: the devices it runs on.
      write: write ``config.json`` if it is absent (``False``: only check).

    Raises:
      ValueError: if the batch does not split over the devices, ``workdir`` cannot be a writable directory,
        or it holds a run of another config (the message lists the settings that differ). Nothing is
        written in any of these cases.
    """
    from experiments.ordering import train

    train.check_devices(config, device_count)
    locks.check_workdir(workdir)
    config_path = Path(workdir) / "config.json"
    config_json = config.to_json()
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if previous != config_json:
            differences = "; ".join(config_differences(previous, config_json))
            raise ValueError(
                f"run(workdir={str(workdir)!r}): the directory holds results of a different config "
                f"({differences}); rerun with the same options to resume, or choose another --workdir"
            )
    elif write:
        from experiments.ordering.summary import atomic_write

        atomic_write(config_path, json.dumps(config_json, indent=1))


#: What an interrupted run leaves: files written through a temporary name, Orbax's temporary directories.
_TEMPORARIES = (".*.tmp[0-9]*", "*.orbax-checkpoint-tmp*")


def _clean(workdir: Path, groups: list[config_lib.Group], everything: bool) -> None:
    """Removes the temporary files of ``groups`` (``everything``: of the whole directory) an interrupted run
    left, naming them on stderr."""
    directories = [workdir / "checkpoints" / g.name for g in groups]
    if everything:
        removed = locks.remove_stale_temporaries([workdir, workdir / "groups", *directories], _TEMPORARIES)
    else:
        own = [f".{g.name}.json.tmp[0-9]*" for g in groups]
        removed = locks.remove_stale_temporaries([workdir / "groups"], own)
        removed += locks.remove_stale_temporaries(directories, _TEMPORARIES)
    if removed:
        names = ", ".join(str(p) for p in removed)
        print(f"removed {len(removed)} temporary file(s) left by an interrupted run: {names}", file=sys.stderr)


def _group_path(workdir: Path, group: config_lib.Group) -> Path:
    return workdir / "groups" / f"{group.name}.json"


def _load_group(path: Path, fingerprint_of: Callable[[int], str], device_count: int | None) -> dict | None:
    """A finished group's record, or ``None`` if there is none or its file is damaged (then it retrains).

    Args:
      path: the group file.
      fingerprint_of: the expected fingerprint for a device count.
      device_count: the devices the group must have been trained on (``None``: those its record names).

    Raises:
      ValueError: if the group was trained with another config or device count.
    """
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        print(f"group file {path} is truncated or damaged ({error}); retraining that group", file=sys.stderr)
        return None
    count = record.get("device_count") if device_count is None else device_count
    if not isinstance(count, int) or record.get("fingerprint") != fingerprint_of(count):
        raise ValueError(
            f"run(workdir={str(path.parent.parent)!r}): group {path.name} was trained with another config or "
            f"device count (now {count}); choose another --workdir"
        )
    return record


def run(
    config: config_lib.ExperimentConfig,
    workdir: Path,
    *,
    progress: bool = True,
    compile_cache: Path | None = None,
    command: str = "python -m experiments.ordering",
    stop_after: int | None = None,
    shard: tuple[int, int] | None = None,
    checkpoint_steps: int | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) the experiment of ``config`` in ``workdir`` and writes every output.

    Args:
      config: the experiment.
      workdir: output directory; finished groups found there are reused, unfinished ones resume from their
        latest checkpoint.
      progress: print the work directory and a progress bar of the whole run (position and ETA).
      compile_cache: persistent compilation cache directory, or ``None``.
      command: the command line, for the report.
      stop_after: train at most this many new groups, then return without the final outputs (for tests
        of resuming).
      shard: ``(index, count)``: train only that shard's groups (`shard_groups`) and write no final outputs
        (`merge` writes them once every shard is done).
      checkpoint_steps: steps between checkpoints (see `checkpoint_every`).

    Returns:
      ``{"records", "rows", "summary", "diverged", "wall_seconds", "trained", "skipped"}`` (``rows`` and
      ``summary`` are ``None`` when no final outputs were written; ``diverged`` lists the groups whose
      training loss became non-finite, `summary.diverged_groups`).

    Raises:
      ValueError: for a setting that cannot run or an unusable work directory (nothing is written then),
        or a group of another config.
      locks.WorkdirBusy: if another run holds one of the groups' locks (naming it).
    """

    from experiments.ordering import train

    mesh = train.make_mesh()
    workdir = Path(workdir)
    every = checkpoint_every(config, checkpoint_steps)
    groups = shard_groups(config.groups(), shard)
    prepare(config, workdir, mesh.size, write=False)
    with locks.hold(workdir, [g.name for g in groups], command=command):
        prepare(config, workdir, mesh.size)
        _clean(workdir, groups, everything=shard is None)
        return _run_locked(
            config, workdir, groups, mesh, every, progress, compile_cache, command, stop_after, shard
        )


def _run_locked(config, workdir, groups, mesh, every, progress, compile_cache, command, stop_after, shard):
    import jax

    from experiments.ordering import train
    from experiments.ordering.summary import atomic_write

    if compile_cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(compile_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    started = time.perf_counter()
    done: dict[str, dict[str, Any]] = {}  # by group name; the outputs follow the configuration's order
    trained, skipped = 0, 0
    pending = []
    for group in groups:
        fingerprint = config.group_fingerprint(group, mesh.size)
        record = _load_group(
            _group_path(workdir, group), lambda n, g=group: config.group_fingerprint(g, n), mesh.size
        )
        if record is None:
            pending.append((group, fingerprint))
        else:
            done[group.name] = record
            skipped += 1

    def in_order():
        return [done[g.name] for g in groups if g.name in done]

    bar = None
    if progress:
        from tqdm import tqdm

        print(f"work directory: {workdir.absolute()}", file=sys.stderr, flush=True)
        total = sum(config.steps_for(g.task, g.mode) for g in groups)
        finished = total - sum(config.steps_for(g.task, g.mode) for g, _ in pending)
        bar = tqdm(total=total, initial=finished, unit="step", file=sys.stderr, dynamic_ncols=True)
    for number, (group, fingerprint) in enumerate(pending, skipped + 1):
        if stop_after is not None and trained >= stop_after:
            if bar is not None:
                bar.close()
            return _partial(config, in_order(), None, trained, skipped)
        setup = train.setup_group(config, group, mesh)
        base = bar.n if bar is not None else 0
        name = f"[{number}/{len(groups)}] {group.name}"

        def show(step, losses, accuracies, bar=bar, base=base, name=name):
            if bar is not None:
                bar.set_description(name, refresh=False)
                bar.set_postfix(loss=f"{losses.mean():.3f}", acc=f"{accuracies.mean():.3f}", refresh=False)
                bar.update(base + step - bar.n)

        checkpoints = GroupCheckpoints(
            workdir / "checkpoints" / group.name,
            fingerprint,
            every=every,
            log_path=workdir / "logs" / f"{group.name}.jsonl",
        )
        record = train.train_group(setup, progress=show, checkpoints=checkpoints)
        record["fingerprint"] = fingerprint
        record["device"] = _device_text()  # the training machine's, for outputs merged elsewhere
        atomic_write(_group_path(workdir, group), json.dumps(json_safe(record)))
        checkpoints.remove()
        done[group.name] = json_safe(record)
        trained += 1
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - started
    if shard is not None:
        return _partial(config, in_order(), wall, trained, skipped)
    result = write_outputs(workdir, config, in_order(), command=command, wall=wall, trained=trained)
    return {**result, "wall_seconds": wall, "trained": trained, "skipped": skipped}


def _partial(config, records: list, wall: float | None, trained: int, skipped: int) -> dict[str, Any]:
    """The result of a run that wrote no final outputs."""
    from experiments.ordering.summary import diverged_groups

    return dict(
        records=records,
        rows=None,
        summary=None,
        diverged=diverged_groups(config, records),
        wall_seconds=wall,
        trained=trained,
        skipped=skipped,
    )


def merge(workdir: Path, *, command: str = "python -m experiments.ordering --merge") -> dict[str, Any]:
    """Writes the final outputs of a sharded run from its finished groups.

    Raises:
      ValueError: if ``workdir`` is not a writable directory with a ``config.json``, or some groups are not
        finished (they are listed).
      locks.WorkdirBusy: if another run holds one of the groups' locks (naming it).
    """
    workdir = Path(workdir)
    locks.check_workdir(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise ValueError(f"merge(workdir={str(workdir)!r}): no config.json; is this a run's work directory?")
    config = config_lib.ExperimentConfig.from_json(json.loads(config_path.read_text()))
    groups = config.groups()
    with locks.hold(workdir, [g.name for g in groups], command=command):
        _clean(workdir, groups, everything=True)
        records, missing = [], []
        for group in groups:
            record = _load_group(
                _group_path(workdir, group), lambda n, g=group: config.group_fingerprint(g, n), None
            )
            if record is None:
                missing.append(group.name)
            else:
                records.append(record)
        if missing:
            raise ValueError(
                f"merge(workdir={str(workdir)!r}): {len(missing)} group(s) not finished: {', '.join(missing)}; "
                "run the missing shards first"
            )
        result = write_outputs(workdir, config, records, command=command, wall=None, trained=0)
    return {**result, "config": config}


def _device_text() -> str:
    """This machine's first JAX device, its host CPU and core count, as the summary's ``device``."""
    import jax

    device = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{device.platform} ({getattr(device, 'device_kind', '')}; host {cpu}, {os.cpu_count()} cores)"


def write_outputs(
    workdir: Path,
    config: config_lib.ExperimentConfig,
    records: list[dict[str, Any]],
    *,
    command: str,
    wall: float | None,
    trained: int,
) -> dict[str, Any]:
    """Writes ``metrics.jsonl``, ``training.jsonl``, the summary, figures and ``report.md`` from the
    groups' records, taken in configuration order; returns ``{"records", "rows", "summary", "diverged"}``
    (``diverged``: the groups whose training loss became non-finite, `summary.diverged_groups`). The
    summary's ``device`` names the machines that trained the groups when every record names its own (records
    written before they did: this machine's)."""
    import jax

    from experiments.ordering import figures, report, summary

    records = summary.in_config_order(config, records)
    # Wall time of the whole run, resumed parts included (each group's own time is in its record).
    total = sum(r["compile_seconds"] + r["train_seconds"] + r["test_seconds"] for r in records)
    # The machines that trained the groups, where every record names its own (merged shards); else this one.
    trained_on = [r.get("device") for r in records]
    device = "; ".join(dict.fromkeys(trained_on)) if records and all(trained_on) else _device_text()
    extra = {
        "command": command,
        "wall_seconds_this_invocation": wall,
        "wall_seconds": wall if wall is not None and trained == len(records) else total,
        "group_seconds_total": total,
        "device": device,
        "device_count": records[0]["device_count"] if records else len(jax.devices()),
        "groups_trained_now": trained,
        "groups_resumed": len(records) - trained,
        "jax_version": jax.__version__,
    }
    summary.write_metrics(workdir, records)
    result = summary.write_summary(workdir, config, records, extra)
    names = figures.write_figures(workdir, config, records)
    report.write_report(workdir, config, records, result, names)
    return {"records": records, "rows": result["rows"], "summary": result, "diverged": result["diverged"]}
