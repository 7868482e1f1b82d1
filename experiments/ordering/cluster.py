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

`experiments.ordering.submit` is the command line's side (``--submit``: the plan printed, the projected
cost, the dry run). submitit's files (pickled tasks, each task's stdout and stderr) live in
``WORKDIR/jobs/<job id>/`` (local processes: ``WORKDIR/jobs/local/``); every submission is recorded in
``WORKDIR/jobs/submissions.jsonl``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from experiments.ordering import config as config_lib
from experiments.ordering import runner

__all__ = [
    "ROOT",
    "COMMAND",
    "require_submitit",
    "ClusterOptions",
    "Plan",
    "make_plan",
    "ShardTask",
    "MergeTask",
    "sbatch_parameters",
    "submit_slurm",
    "LocalArray",
]

#: The directory that holds the ``experiments`` package: jobs start there, so that they import this code.
ROOT = Path(__file__).resolve().parents[2]

#: The experiment's command.
COMMAND = "python -m experiments.ordering"


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
            "install the dev extra, which has every package the experiments need: pip install -e '.[dev]' "
            "(or pip install submitit)"
        ) from error
    return submitit


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
    command: str = COMMAND

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
    command: str = COMMAND,
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

        try:
            status = cli.main(["--merge", str(self.workdir)])
        except SystemExit as exit:  # a usage error (unfinished groups, a held lock), printed on stderr
            status = exit.code
        if status not in (0, cli.DIVERGED_STATUS):  # diverged groups are written, marked, and named
            raise RuntimeError(f"{COMMAND} --merge {self.workdir} exited with status {status}")
        return {"summary": str(self.workdir / "summary.json"), "status": status}


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
