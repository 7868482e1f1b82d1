"""Launching the experiment as a SLURM job array through submitit (or as local processes, the same code).

The config's groups are split into shards (`runner.shard_groups`): array task ``I`` of ``N`` trains shard
``I/N`` into one shared work directory, exactly as ``--shard I/N`` does (finished groups are skipped, an
unfinished group resumes from its latest checkpoint), and a merge job that starts once every array task has
ended (``afterany``) writes the summary and report as ``--merge WORKDIR`` does.

Requeueing: submitit asks SLURM to send ``SIGUSR2`` a little before a task's time limit (``--signal``); the task
then calls `ShardTask.checkpoint`, submitit requeues it (``scontrol requeue``), and the requeued task resumes
from the checkpoints on disk, losing at most the checkpoint interval of training. The array is submitted with
``--requeue``, so that a task preempted or lost with its node is requeued by SLURM and resumes the same way.
A task that still fails (a bug, the requeue limit) is rerun by submitting the same command again.

submitit's files (pickled tasks, each task's stdout and stderr) live in ``WORKDIR/jobs/<job id>/`` (local
processes: ``WORKDIR/jobs/local/``); every submission is recorded in ``WORKDIR/jobs/submissions.jsonl``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from experiments.ordering import config as config_lib
from experiments.ordering import runner

__all__ = [
    "KINDS",
    "ClusterOptions",
    "Plan",
    "ShardTask",
    "MergeTask",
    "parse_time",
    "make_plan",
    "project",
    "sbatch_parameters",
    "format_plan",
    "format_dry_run",
    "add_arguments",
    "options_from_args",
    "launch",
    "submit_slurm",
    "LocalArray",
    "require_submitit",
]

#: Values of ``--submit``.
KINDS = ("slurm", "local", "dry-run")

#: The directory that holds the ``experiments`` package: jobs start there, so that they import this code.
ROOT = Path(__file__).resolve().parents[2]

_COMMAND = "python -m experiments.ordering"


def require_submitit():
    """The ``submitit`` module.

    Raises:
      ImportError: if it is not installed; the message names the extra that installs it.
    """
    try:
        import submitit
    except ImportError as error:
        raise ImportError(
            "--submit needs submitit (Meta's launcher for SLURM and local processes), which is not installed; "
            "install the experiments' extra: pip install -e '.[experiments]' (or pip install submitit)"
        ) from error
    return submitit


def parse_time(text: str) -> int:
    """A SLURM time limit as minutes: ``MINUTES``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]`` or ``MM:SS`` (seconds
    round up).

    >>> parse_time("90"), parse_time("2:00:00"), parse_time("1-12"), parse_time("4:30")
    (90, 120, 2160, 5)

    Raises:
      ValueError: for any other text, or a limit under one minute.
    """
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if match is None:
        raise ValueError(
            f"parse_time(text={text!r}): expected MINUTES, HH:MM:SS, D-HH[:MM[:SS]] or MM:SS (as sbatch --time)"
        )
    days, first, second, third = (None if g is None else int(g) for g in match.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = ((days * 24 + first) * 60 + (second or 0)) * 60 + (third or 0)
    elif third is not None:  # HH:MM:SS
        seconds = (first * 60 + second) * 60 + third
    elif second is not None:  # MM:SS
        seconds = first * 60 + second
    else:
        seconds = first * 60
    if seconds < 60:
        raise ValueError(f"parse_time(text={text!r}): the time limit must be at least one minute")
    return -(-seconds // 60)


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """Where and how the array and the merge job run.

    Attributes:
      partition: SLURM partition of the array (``None``: the cluster's default).
      gpus_per_task: GPUs of each array task (one node; every task's batch is sharded over them). 0: CPU.
      cpus_per_task: CPU cores of each array task.
      mem_gb: memory of each array task (``None``: the partition's default).
      time_minutes: time limit of each array task; a task that reaches it is requeued and resumes.
      array_parallelism: array tasks running at once (``None``: all).
      tasks: array tasks (``None``: one per group; at most the number of groups).
      account, qos: SLURM account and quality of service (``None``: the defaults).
      sbatch: further ``#SBATCH`` flags as ``KEY=VALUE`` or ``KEY`` (e.g. ``constraint=a100``).
      setup: shell lines run before each job (e.g. ``module load cuda``, ``source .venv/bin/activate``).
      merge_partition: partition of the merge job (``None``: ``partition``); it needs no GPU.
      merge_time_minutes: time limit of the merge job.
      max_requeues: how often a task may be requeued at its time limit before it gives up.
      signal_delay_s: seconds before the time limit at which SLURM signals the task.
    """

    partition: str | None = None
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem_gb: float | None = None
    time_minutes: int = 24 * 60
    array_parallelism: int | None = None
    tasks: int | None = None
    account: str | None = None
    qos: str | None = None
    sbatch: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    merge_partition: str | None = None
    merge_time_minutes: int = 60
    max_requeues: int = 10
    signal_delay_s: int = 120

    def __post_init__(self):
        for name, low in (
            ("gpus_per_task", 0),
            ("cpus_per_task", 1),
            ("time_minutes", 1),
            ("merge_time_minutes", 1),
            ("max_requeues", 0),
            ("signal_delay_s", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"ClusterOptions({name}={value!r}): must be an integer >= {low}")
        for name in ("array_parallelism", "tasks"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"ClusterOptions({name}={value!r}): must be a positive integer or None")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise ValueError(f"ClusterOptions(mem_gb={self.mem_gb!r}): must be positive or None")
        if self.signal_delay_s >= 60 * self.time_minutes:
            raise ValueError(
                f"ClusterOptions(signal_delay_s={self.signal_delay_s}): must be shorter than the time limit "
                f"({self.time_minutes} min)"
            )
        self.extra_sbatch()  # checks the flags' format

    def extra_sbatch(self) -> dict[str, Any]:
        """``sbatch`` as a dict for submitit (``True`` for a bare flag)."""
        out: dict[str, Any] = {}
        for item in self.sbatch:
            key, sep, value = item.partition("=")
            key = key.strip().lstrip("-")
            if not re.fullmatch(r"[a-z][a-z0-9-]*", key) or (sep and not value):
                raise ValueError(
                    f"ClusterOptions(sbatch={item!r}): expected an sbatch long option as KEY=VALUE or KEY, "
                    "e.g. constraint=a100 or exclusive"
                )
            out[key] = value if sep else True
        return out


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a launch submits: the config, the work directory and each array task's groups.

    Attributes:
      config: the experiment.
      workdir: the shared work directory (absolute).
      options: the cluster options.
      shards: each array task's groups (task ``i`` trains shard ``i/len(shards)``).
      checkpoint_steps: ``--checkpoint-every`` (``None``: the default interval).
      compile_cache: persistent compilation cache directory, or ``None``.
      command: the command line, recorded with the submission.
    """

    config: config_lib.ExperimentConfig
    workdir: Path
    options: ClusterOptions
    shards: tuple[tuple[config_lib.Group, ...], ...]
    checkpoint_steps: int | None = None
    compile_cache: Path | None = None
    command: str = _COMMAND

    @property
    def folder(self) -> Path:
        """submitit's folder: pickled tasks and logs, one directory per job."""
        return self.workdir / "jobs" / "%j"

    def tasks(self) -> list[ShardTask]:
        count = len(self.shards)
        return [ShardTask(self, (index, count)) for index in range(count)]


def make_plan(
    config: config_lib.ExperimentConfig,
    workdir: Path,
    options: ClusterOptions,
    *,
    checkpoint_steps: int | None = None,
    compile_cache: Path | None = None,
    command: str = _COMMAND,
) -> Plan:
    """Splits the config's groups over the array tasks.

    Raises:
      ValueError: if the batch does not split over ``options.gpus_per_task`` GPUs, or the checkpoint
        interval is not a multiple of the check interval.
    """
    from experiments.ordering import checkpoint, train

    checkpoint.checkpoint_every(config, checkpoint_steps)  # checks it
    if options.gpus_per_task:
        train.check_devices(config, options.gpus_per_task)
    groups = config.groups()
    count = min(options.tasks or len(groups), len(groups))
    shards = tuple(tuple(runner.shard_groups(groups, (i, count))) for i in range(count))
    workdir = Path(workdir).absolute()
    cache = None if compile_cache is None else Path(compile_cache).absolute()
    return Plan(config, workdir, options, shards, checkpoint_steps, cache, command)


def _latest_checkpoints(workdir: Path, groups: Sequence[config_lib.Group]) -> dict[str, int]:
    """The step of each group's latest checkpoint (groups without one are left out)."""
    out = {}
    for group in groups:
        directory = workdir / "checkpoints" / group.name
        steps = [int(p.name) for p in directory.glob("*") if p.name.isdigit()] if directory.is_dir() else []
        if steps:
            out[group.name] = max(steps)
    return out


class ShardTask:
    """One array task: trains its shard into the work directory (submitit calls it in the job).

    Checkpointable in submitit's sense: at its time limit `checkpoint` returns the same task to requeue,
    which resumes from the checkpoints on disk (the training state is never pickled).
    """

    def __init__(self, plan: Plan, shard: tuple[int, int]):
        self.plan = plan
        self.shard = shard
        self.attempt = 1

    def __call__(self) -> dict[str, Any]:
        plan, (index, count) = self.plan, self.shard
        groups = plan.shards[index]
        resumed = _latest_checkpoints(plan.workdir, groups)
        print(
            f"shard {index}/{count}, attempt {self.attempt}: {len(groups)} group(s) "
            f"({', '.join(g.name for g in groups)}) into {plan.workdir}"
            + "".join(f"; {name} resumes from step {step}" for name, step in resumed.items()),
            flush=True,
        )
        result = runner.run(
            plan.config,
            plan.workdir,
            progress=False,
            compile_cache=plan.compile_cache,
            command=f"{plan.command} --shard {index}/{count}",
            shard=self.shard,
            checkpoint_steps=plan.checkpoint_steps,
        )
        diverged = [d["group"] for d in result["diverged"]]
        print(
            f"shard {index}/{count}: {result['trained']} trained, {result['skipped']} already there"
            + (f"; DIVERGED (marked in the summary): {', '.join(diverged)}" if diverged else ""),
            flush=True,
        )
        return {
            "shard": [index, count],
            "attempt": self.attempt,
            "trained": result["trained"],
            "skipped": result["skipped"],
            "resumed": resumed,
            "diverged": diverged,
        }

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Called by submitit at the time-limit (or preemption) signal: the task to requeue."""
        helpers = require_submitit().helpers
        again = copy.copy(self)
        again.attempt = self.attempt + 1
        print(
            f"shard {self.shard[0]}/{self.shard[1]}: signalled; requeued as attempt {again.attempt}, to resume "
            "from the latest checkpoints",
            flush=True,
        )
        return helpers.DelayedSubmission(again, *args, **kwargs)


class MergeTask:
    """The merge job: writes the summary and report from every finished group, as ``--merge`` does."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)

    def __call__(self) -> dict[str, Any]:
        from experiments.ordering import __main__ as cli

        status = cli.main(["--merge", str(self.workdir)])
        if status not in (0, cli.DIVERGED_STATUS):  # diverged groups are written, marked, and named
            raise RuntimeError(f"{_COMMAND} --merge {self.workdir} exited with status {status}")
        return {"summary": str(self.workdir / "summary.json"), "status": status}


def project(
    plan: Plan, *, step_seconds: float | None = None, timed: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The projected hours of every array task and the total GPU-hours.

    Args:
      plan: the launch.
      step_seconds: a stated time of one training step of one group on one task's devices (all seeds).
      timed: the result of `estimate.estimate` (timed on this machine), used instead where given.

    Returns:
      ``{"source", "unit", "tasks": [hours per task], "total_hours", "device_hours", "longest_hours",
      "wall_hours", "requeues"}``; the hours are ``None`` when neither ``step_seconds`` nor ``timed`` is given.
    """
    opts = plan.options
    unit = "GPU-hours" if opts.gpus_per_task else "task-hours (CPU)"
    devices = max(opts.gpus_per_task, 1)
    if timed is not None:
        per_group = {row["group"]: row["hours"] for row in timed["groups"]}
        source = (
            f"timed here by --estimate on {timed['device_count']} × {timed['device']} (steps and validation "
            "checks; this machine's speed, not the cluster's)"
        )
    elif step_seconds is not None:
        per_group = {
            g.name: plan.config.steps_for(g.task, g.mode) * step_seconds / 3600 for s in plan.shards for g in s
        }
        source = f"a stated {step_seconds * 1e3:g} ms per training step (--step-seconds; checks not included)"
    else:
        return {
            "source": "no step time: pass --step-seconds S (from --estimate on a node of the partition) or "
            "--estimate (timed here)",
            "unit": unit,
            "tasks": None,
            "total_hours": None,
            "device_hours": None,
            "longest_hours": None,
            "wall_hours": None,
            "requeues": None,
        }
    tasks = [sum(per_group[g.name] for g in shard) for shard in plan.shards]
    # SLURM starts array tasks in order, each as soon as one of the `parallel` running ones ends.
    slots = [0.0] * min(opts.array_parallelism or len(tasks), len(tasks))
    for hours in tasks:
        slots[slots.index(min(slots))] += hours
    longest = max(tasks)
    total = sum(tasks)
    limit = opts.time_minutes / 60
    return {
        "source": source,
        "unit": unit,
        "tasks": tasks,
        "total_hours": total,
        "device_hours": total * devices,
        "longest_hours": longest,
        "wall_hours": max(slots),
        "requeues": max(math.ceil(longest / limit) - 1, 0),
    }


def sbatch_parameters(plan: Plan, job: str) -> dict[str, Any]:
    """submitit's `SlurmExecutor` parameters of the ``"array"`` or the ``"merge"`` job.

    The array asks for ``--requeue`` (a preempted task comes back) and one task per array element on one node;
    both jobs start in the directory that holds the ``experiments`` package, so that they import this code.
    """
    opts = plan.options
    extra: dict[str, Any] = {"chdir": str(ROOT)}
    params: dict[str, Any] = {
        "job_name": f"ordering-{plan.config.preset}" + ("-merge" if job == "merge" else ""),
        "nodes": 1,
        "ntasks_per_node": 1,
    }
    if opts.account:
        params["account"] = opts.account
    if opts.qos:
        params["qos"] = opts.qos
    if opts.setup:
        params["setup"] = list(opts.setup)
    if job == "array":
        params.update(
            time=opts.time_minutes, cpus_per_task=opts.cpus_per_task, signal_delay_s=opts.signal_delay_s
        )
        if opts.partition:
            params["partition"] = opts.partition
        if opts.gpus_per_task:
            params["gpus_per_node"] = opts.gpus_per_task
        if opts.mem_gb is not None:
            params["mem"] = _mem(opts.mem_gb)
        if opts.array_parallelism:
            params["array_parallelism"] = opts.array_parallelism
        extra["requeue"] = True
    elif job == "merge":
        params.update(time=opts.merge_time_minutes, cpus_per_task=min(opts.cpus_per_task, 4))
        partition = opts.merge_partition or opts.partition
        if partition:
            params["partition"] = partition
    else:
        raise ValueError(f"sbatch_parameters(job={job!r}): must be 'array' or 'merge'")
    params["additional_parameters"] = {**extra, **opts.extra_sbatch()}
    return params


def _mem(gb: float) -> str:
    return f"{int(gb)}GB" if gb == int(gb) else f"{int(gb * 1024)}MB"


def _sbatch_script(plan: Plan, job: str, *, count: int | None = None, dependency: str | None = None) -> str:
    """The sbatch script submitit writes for ``job`` (its own template, so that the dry run shows exactly
    what would be submitted)."""
    from submitit.slurm import slurm  # the template is module-private in submitit; pinned in pyproject

    params = sbatch_parameters(plan, job)
    if dependency is not None:
        params["dependency"] = dependency
    command = " ".join(
        [shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(plan.folder))]
    )
    return slurm._make_sbatch_string(command=command, folder=plan.folder, map_count=count, **params)


def format_plan(plan: Plan, projection: dict[str, Any], *, local: bool = False) -> str:
    """What `submit_slurm` (or, ``local``, `LocalArray`) runs: the array, each task's groups, the merge, and
    the projected hours with where the number comes from."""
    config, opts = plan.config, plan.options
    count = len(plan.shards)
    parallel = min(opts.array_parallelism or count, count)
    devices = f"{opts.gpus_per_task} GPU(s)" if opts.gpus_per_task else "no GPU"
    where = (
        f"{count} local process(es) (at most {parallel} at once), each with {devices}"
        if local
        else f"a SLURM job array of {count} task(s) (at most {parallel} at once), each task on one node with "
        f"{devices} and {opts.cpus_per_task} CPU(s), partition {opts.partition or '(default)'}"
    )
    lines = [
        f"Preset {config.preset!r} ({len(config.groups())} groups) into {plan.workdir} as {where}, time limit "
        f"{_hours(opts.time_minutes / 60)} (requeued at the limit up to {opts.max_requeues} times, resuming "
        "from checkpoints):",
    ]
    finished = [g.name for g in config.groups() if (plan.workdir / "groups" / f"{g.name}.json").exists()]
    if finished:
        lines.append(
            f"  ({len(finished)} group(s) already finished in the work directory: their tasks skip them)"
        )
    hours = projection["tasks"]
    for index, shard in enumerate(plan.shards):
        steps = sum(config.steps_for(g.task, g.mode) for g in shard)
        cost = "" if hours is None else f", {_hours(hours[index])}"
        names = ", ".join(g.name for g in shard)
        lines.append(f"  task {index} (--shard {index}/{count}): {steps:,} steps{cost}: {names}")
    merge_partition = opts.merge_partition or opts.partition or "(default)"
    merge = "here" if local else f"as a job on partition {merge_partition} without GPU (afterany)"
    lines += [
        f"then, once every task has ended, the merge {merge}: {_COMMAND} --merge {plan.workdir}",
        f"submitit's files and the tasks' logs: {plan.workdir / 'jobs' / ('local' if local else '%j')}/",
        "",
        "Projected cost: " + projection["source"] + ":",
    ]
    if hours is None:
        total_steps = sum(config.steps_for(g.task, g.mode) for g in config.groups())
        lines.append(f"  {total_steps:,} training steps in all; hours not projected")
    else:
        lines += [
            f"  {projection['device_hours']:,.1f} {projection['unit']} in all "
            f"({projection['total_hours']:,.1f} task-hours × {max(opts.gpus_per_task, 1)} device(s) per task)",
            f"  longest task {_hours(projection['longest_hours'])}: {projection['requeues']} requeue(s) at a "
            f"{_hours(opts.time_minutes / 60)} limit; {_hours(projection['wall_hours'])} of wall time once "
            "running, tasks started in order as slots free (compilation, test evaluation, requeues and "
            "queueing not included)",
        ]
        if projection["requeues"] > opts.max_requeues:
            lines.append(
                f"  WARNING: more requeues than --max-requeues {opts.max_requeues}: raise it or the time limit"
            )
    return "\n".join(lines)


def format_dry_run(plan: Plan, projection: dict[str, Any]) -> str:
    """`format_plan`, then the sbatch scripts of the array and of the merge job."""
    lines = [format_plan(plan, projection), "", "sbatch script of the array:"]
    lines += [_sbatch_script(plan, "array", count=len(plan.shards)), "sbatch script of the merge job:"]
    lines += [_sbatch_script(plan, "merge", dependency="afterany:<ARRAY_JOB_ID>")]
    return "\n".join(lines)


def _hours(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:,.1f} h"


def _record(plan: Plan, kind: str, jobs: dict[str, Any]) -> None:
    """Appends the submission to ``WORKDIR/jobs/submissions.jsonl``."""
    path = plan.workdir / "jobs" / "submissions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "kind": kind,
        "command": plan.command,
        "shards": [[g.name for g in shard] for shard in plan.shards],
        "options": dataclasses.asdict(plan.options),
        **jobs,
    }
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")


def submit_slurm(plan: Plan) -> tuple[list[Any], Any]:
    """Submits the array and the merge job (``afterany`` on the array) with submitit's `SlurmExecutor`.

    Returns:
      ``(array_jobs, merge_job)``: submitit jobs.
    """
    submitit = require_submitit()
    executor = submitit.SlurmExecutor(plan.folder, max_num_timeout=plan.options.max_requeues)
    executor.update_parameters(**sbatch_parameters(plan, "array"))
    with executor.batch():
        jobs = [executor.submit(task) for task in plan.tasks()]
    array_id = jobs[0].job_id.split("_")[0]
    merger = submitit.SlurmExecutor(plan.folder)
    merger.update_parameters(**sbatch_parameters(plan, "merge"), dependency=f"afterany:{array_id}")
    merge_job = merger.submit(MergeTask(plan.workdir))
    _record(plan, "slurm", {"array_job": array_id, "merge_job": merge_job.job_id})
    return jobs, merge_job


class LocalArray:
    """The array as local processes through submitit's `LocalExecutor` (at most ``array_parallelism`` at
    once), for a workstation and for tests: the same tasks, requeueing (a signalled task restarts and resumes)
    and merge as on the cluster. GPUs: each running task sees its own ``gpus_per_task`` of them."""

    def __init__(self, plan: Plan, *, poll_seconds: float = 0.2):
        self.plan = plan
        self.poll_seconds = poll_seconds
        # One folder for every local job (the job id, a process id, prefixes each file): submitit's local
        # controller would create a literal "%j" directory otherwise.
        self.folder = plan.workdir / "jobs" / "local"
        self.waiting = list(plan.tasks())
        self.jobs: list[Any] = []  # in start order
        self._slots: dict[int, Any] = {}  # slot -> running job
        self.results: dict[int, Any] = {}  # task index -> result, or the exception it ended with
        self._logs: dict[int, Path] = {}
        _record(plan, "local", {})

    def poll(self) -> bool:
        """Collects finished tasks and starts waiting ones in free slots; ``True`` once every task ended."""
        submitit = require_submitit()
        opts = self.plan.options
        for slot, (index, job) in list(self._slots.items()):
            if job.done():
                try:
                    self.results[index] = job.result()
                except Exception as error:  # a task that failed or was killed
                    self.results[index] = error
                del self._slots[slot]
        parallel = opts.array_parallelism or len(self.plan.shards)
        for slot in range(parallel):
            if slot in self._slots or not self.waiting:
                continue
            task = self.waiting.pop(0)
            executor = submitit.LocalExecutor(self.folder, max_num_timeout=opts.max_requeues)
            gpus = opts.gpus_per_task
            executor.update_parameters(
                timeout_min=opts.time_minutes,
                signal_delay_s=opts.signal_delay_s,
                gpus_per_node=gpus,
                visible_gpus=tuple(range(slot * gpus, (slot + 1) * gpus)),
            )
            job = executor.submit(task)
            self.jobs.append(job)
            self._slots[slot] = (task.shard[0], job)
            self._logs[task.shard[0]] = job.paths.stderr
        return not self._slots and not self.waiting

    def wait(self, progress: Callable[[str], None] | None = None) -> dict[int, Any]:
        """Polls until every task ended; returns each task's result or the exception it ended with."""
        reported = 0
        while not self.poll():
            if progress is not None and len(self.results) > reported:
                reported = len(self.results)
                progress(f"{reported}/{len(self.plan.shards)} task(s) ended")
            time.sleep(self.poll_seconds)
        return self.results

    def failures(self) -> dict[int, str]:
        """Each failed task's error (its last line) and log, by task index."""
        out = {}
        for index, result in sorted(self.results.items()):
            if isinstance(result, BaseException):
                last = (str(result).strip().splitlines() or [""])[-1]
                out[index] = f"{type(result).__name__}: {last} (log: {self._logs[index]})"
        return out


def add_arguments(parser) -> None:
    """The command line's ``--submit`` options."""
    group = parser.add_argument_group(
        "cluster launch",
        "--submit slurm trains the groups as a SLURM job array through submitit (one shard per task, a shared "
        "--workdir, requeued at the time limit and resumed from checkpoints), then merges the summary in a "
        "dependent job; local: the same as local processes, then the merge; dry-run: prints what slurm "
        "would submit and the projected GPU-hours",
    )
    group.add_argument("--submit", choices=KINDS, help="launch the run as an array job (see above)")
    group.add_argument("--partition", help="SLURM partition of the array (default: the cluster's)")
    group.add_argument("--gpus-per-task", type=int, default=1, help="GPUs per array task (0: CPU; default 1)")
    group.add_argument("--cpus-per-task", type=int, default=8, help="CPU cores per array task (default 8)")
    group.add_argument("--mem-gb", type=float, help="memory per array task in GB (default: the partition's)")
    group.add_argument(
        "--time", default="24:00:00", help="time limit per task, as sbatch --time (default 24:00:00)"
    )
    group.add_argument("--array-parallelism", type=int, help="array tasks running at once (default: all)")
    group.add_argument("--tasks", type=int, help="array tasks (default: one per group)")
    group.add_argument("--account", help="SLURM account")
    group.add_argument("--qos", help="SLURM quality of service")
    group.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="a further sbatch option, repeatable (e.g. --sbatch constraint=a100 --sbatch mail-type=END)",
    )
    group.add_argument(
        "--setup",
        action="append",
        default=[],
        metavar="LINE",
        help="a shell line run before each job, repeatable (e.g. 'module load cuda/12.4')",
    )
    group.add_argument("--merge-partition", help="partition of the merge job (default: --partition)")
    group.add_argument("--merge-time", default="1:00:00", help="time limit of the merge job (default 1:00:00)")
    group.add_argument(
        "--max-requeues", type=int, default=10, help="requeues of a task at its time limit (default 10)"
    )
    group.add_argument(
        "--step-seconds",
        type=float,
        help="seconds per training step of one group on one task's GPUs, for the projected GPU-hours (e.g. "
        "from --estimate on a node of the partition); with --estimate instead: timed on this machine",
    )


def options_from_args(args) -> ClusterOptions:
    """The `ClusterOptions` of the parsed command line."""
    return ClusterOptions(
        partition=args.partition,
        gpus_per_task=args.gpus_per_task,
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        time_minutes=parse_time(args.time),
        array_parallelism=args.array_parallelism,
        tasks=args.tasks,
        account=args.account,
        qos=args.qos,
        sbatch=tuple(args.sbatch),
        setup=tuple(args.setup),
        merge_partition=args.merge_partition,
        merge_time_minutes=parse_time(args.merge_time),
        max_requeues=args.max_requeues,
    )


def launch(
    args,
    config: config_lib.ExperimentConfig,
    *,
    command: str,
    progress: Callable[[str], None] | None = None,
) -> int:
    """``--submit``: plans the array, then prints it (dry-run), submits it (slurm), or runs it here and merges
    (local). Returns the exit code.

    Raises:
      ValueError: for an option that cannot run (or submitit missing), before anything is written.
    """
    if args.shard is not None:
        raise ValueError("--submit chooses each task's --shard itself; leave --shard out")
    try:
        require_submitit()
    except ImportError as error:
        raise ValueError(str(error)) from None
    workdir = Path(args.workdir or Path("runs") / f"ordering-{config.preset}").absolute()
    cache = args.compile_cache
    if cache is None:
        cache = workdir / ".jax_cache"
    elif str(cache) == "none":
        cache = None
    if args.step_seconds is not None and not args.step_seconds > 0:
        raise ValueError(f"--step-seconds {args.step_seconds}: must be positive")
    plan = make_plan(
        config,
        workdir,
        options_from_args(args),
        checkpoint_steps=args.checkpoint_every,
        compile_cache=cache,
        command=command,
    )
    timed = None
    if args.estimate:
        from experiments.ordering import estimate

        timed = estimate.estimate(config, progress=progress)
    projection = project(plan, step_seconds=args.step_seconds, timed=timed)
    if args.submit == "dry-run":
        runner.prepare(config, workdir, plan.options.gpus_per_task or 1, write=False)
        print(format_dry_run(plan, projection))
        return 0
    if args.submit == "slurm":
        runner.prepare(config, workdir, plan.options.gpus_per_task or 1)
        print(format_plan(plan, projection))
        jobs, merge_job = submit_slurm(plan)
        array_id = jobs[0].job_id.split("_")[0]
        print(
            f"\nsubmitted: array job {array_id} ({len(jobs)} task(s)), merge job {merge_job.job_id} "
            "(afterany)\n"
            f"watch:  squeue -u $USER; sacct -j {array_id},{merge_job.job_id} --format=JobID,State,Elapsed; "
            f"tail -f {workdir}/logs/*.jsonl\n"
            f"logs:   {workdir}/jobs/{array_id}_<task>/\n"
            f"after a failure (finished groups are kept, the rest resumes): rerun this command, or "
            f"{_COMMAND} --merge {workdir} once every group is done"
        )
        return 0
    import jax

    runner.prepare(config, workdir, len(jax.devices()))
    print(format_plan(plan, projection, local=True), flush=True)
    array = LocalArray(plan)
    array.wait(progress)
    failures = array.failures()
    if failures:
        for index, error in failures.items():
            print(f"task {index} (--shard {index}/{len(plan.shards)}) failed: {error}", file=sys.stderr)
        print(f"logs in {workdir}/jobs/; rerun the same command to resume", file=sys.stderr)
        return 1
    from experiments.ordering import __main__ as cli

    return cli.main(["--merge", str(workdir)])
