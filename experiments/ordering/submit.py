"""The command line's ``--submit``: the plan of an array launch, its projected cost, the dry run, and the
launch itself (`cluster` submits; this module prints, checks and decides).

``--submit slurm`` submits the array and the merge job and returns; ``--submit local`` runs the same tasks as
local processes, waits for them and merges; ``--submit dry-run`` prints what ``slurm`` would submit, both
sbatch scripts and the projected GPU-hours, and writes nothing.
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.ordering import cluster, runner
from experiments.ordering import config as config_lib

__all__ = [
    "KINDS",
    "parse_time",
    "project",
    "format_plan",
    "format_dry_run",
    "add_arguments",
    "options_from_args",
    "launch",
]

#: Values of ``--submit``.
KINDS = ("slurm", "local", "dry-run")

_COMMAND = cluster.COMMAND


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


def project(
    plan: cluster.Plan, *, step_seconds: float | None = None, timed: dict[str, Any] | None = None
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


def _sbatch_script(
    plan: cluster.Plan, job: str, *, count: int | None = None, dependency: str | None = None
) -> str:
    """The sbatch script submitit writes for ``job`` (its own template, so that the dry run shows exactly
    what would be submitted)."""
    from submitit.slurm import slurm  # the template is module-private in submitit (1.5)

    params = cluster.sbatch_parameters(plan, job)
    if dependency is not None:
        params["dependency"] = dependency
    command = " ".join(
        [shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(plan.folder))]
    )
    return slurm._make_sbatch_string(command=command, folder=plan.folder, map_count=count, **params)


def format_plan(plan: cluster.Plan, projection: dict[str, Any], *, local: bool = False) -> str:
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


def format_dry_run(plan: cluster.Plan, projection: dict[str, Any]) -> str:
    """`format_plan`, then the sbatch scripts of the array and of the merge job."""
    lines = [format_plan(plan, projection), "", "sbatch script of the array:"]
    lines += [_sbatch_script(plan, "array", count=len(plan.shards)), "sbatch script of the merge job:"]
    lines += [_sbatch_script(plan, "merge", dependency="afterany:<ARRAY_JOB_ID>")]
    return "\n".join(lines)


def _hours(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:,.1f} h"


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


def options_from_args(args) -> cluster.ClusterOptions:
    """The `ClusterOptions` of the parsed command line."""
    return cluster.ClusterOptions(
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
        index, count = args.shard
        raise ValueError(
            f"submit(shard={index}/{count}): --submit gives every array task its shard; leave out --shard"
        )
    try:
        cluster.require_submitit()
    except ImportError as error:
        raise ValueError(str(error)) from None
    workdir = Path(args.workdir or Path("runs") / f"ordering-{config.preset}").absolute()
    cache = args.compile_cache
    if cache is None:
        cache = workdir / ".jax_cache"
    elif str(cache) == "none":
        cache = None
    if args.step_seconds is not None and not args.step_seconds > 0:
        raise ValueError(f"submit(step_seconds={args.step_seconds}): must be a positive time per step")
    plan = cluster.make_plan(
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
        missing = [name for name in ("sbatch", "srun") if shutil.which(name) is None]
        if missing:
            raise ValueError(
                f"submit(kind='slurm'): {' and '.join(missing)} not found on PATH; submit from the cluster's "
                "login node, or use --submit dry-run (what would be submitted) or --submit local"
            )
        runner.prepare(config, workdir, plan.options.gpus_per_task or 1)
        print(format_plan(plan, projection))
        jobs, merge_job = cluster.submit_slurm(plan)
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

    # Each process sees its own GPUs (or, with none, this machine's CPU devices).
    runner.prepare(config, workdir, plan.options.gpus_per_task or len(jax.devices()))
    print(format_plan(plan, projection, local=True), flush=True)
    array = cluster.LocalArray(plan)
    array.wait(progress)
    failures = array.failures()
    if failures:
        for index, error in failures.items():
            print(f"task {index} (--shard {index}/{len(plan.shards)}) failed: {error}", file=sys.stderr)
        print(f"logs in {workdir}/jobs/; rerun the same command to resume", file=sys.stderr)
        return 1
    from experiments.ordering import __main__ as cli

    return cli.main(["--merge", str(workdir)])
