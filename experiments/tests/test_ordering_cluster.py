"""The cluster launch of the ordering experiment (``--submit``): the dry run and its projected GPU-hours, the
sbatch scripts and pickled tasks of a SLURM submission (through stand-in ``sbatch`` and ``srun`` commands),
usage errors, and an array of local processes (submitit's local executor) with one task signalled at its time
limit (requeued) and one killed, resumed by a rerun and merged into the single-process run's summary."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

from experiments.ordering import __main__ as cli
from experiments.ordering import cluster, runner, submit

submitit = pytest.importorskip("submitit")

# The tiny model of the other ordering tests, with a budget long enough to interrupt a task mid-run.
TINY_ARGS = "--task reverse --schemes none sinusoidal --seeds 0 1 --steps 200 --check-every 10".split()
TINY_ARGS += "--warmup-steps 5 --batch-size 16 --validation-per-length 2 --test-per-length 2".split()
TINY_ARGS += "--train-length 4 --test-length 8 --layers 1 --width 16 --heads 2 --no-progress".split()


def test_dry_run_prints_the_array_the_merge_and_the_gpu_hours(tmp_path, capsys):
    workdir = tmp_path / "paper"
    args = ["--preset", "paper", "--submit", "dry-run", "--workdir", str(workdir), "--partition", "gpu"]
    args += ["--gpus-per-task", "2", "--time", "2-00:00:00", "--array-parallelism", "8", "--tasks", "16"]
    args += [
        "--step-seconds",
        "0.01",
        "--account",
        "lab",
        "--sbatch",
        "constraint=a100",
        "--setup",
        "module load cuda",
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    config = cli.config_from_args(cli.parse_args(args))
    groups = config.groups()
    shards = [runner.shard_groups(groups, (i, 16)) for i in range(16)]
    # Hours of each task: its groups' steps at the stated 10 ms.
    hours = [sum(config.steps_for(g.task, g.mode) for g in shard) * 0.01 / 3600 for shard in shards]
    assert f"Preset 'paper' ({len(groups)} groups) into {workdir} as a SLURM job array of 16 task(s)" in out
    for index in (0, 3, 15):
        steps = sum(config.steps_for(g.task, g.mode) for g in shards[index])
        names = ", ".join(g.name for g in shards[index])
        assert f"  task {index} (--shard {index}/16): {steps:,} steps, {hours[index]:,.1f} h: {names}\n" in out
    # GPU-hours: every task's hours times its 2 GPUs.
    assert f"{2 * sum(hours):,.1f} GPU-hours in all ({sum(hours):,.1f} task-hours × 2" in out
    assert "a stated 10 ms per training step (--step-seconds" in out
    assert f"longest task {max(hours):.1f} h: 0 requeue(s) at a 48.0 h limit" in out
    # 8 tasks at a time, each started in order as soon as a slot frees.
    slots = [0.0] * 8
    for task_hours in hours:
        slots[slots.index(min(slots))] += task_hours
    assert f"{max(slots):.1f} h of wall time once running" in out
    array, merge = out.split("sbatch script of the array:")[1].split("sbatch script of the merge job:")
    for line in (
        "--array=0-15%8",
        "--partition=gpu",
        "--gpus-per-node=2",
        "--time=2880",
        "--requeue",
        "--account=lab",
        "--constraint=a100",
        "--signal=USR2@120",
        "--cpus-per-task=8",
    ):
        assert f"#SBATCH {line}\n" in array
    assert "module load cuda\n" in array and "-m submitit.core._submit" in array
    assert "#SBATCH --dependency='afterany:<ARRAY_JOB_ID>'" in merge and "--gpus-per-node" not in merge
    assert "--requeue" not in merge and "#SBATCH --time=60\n" in merge
    assert not workdir.exists()  # a dry run writes nothing


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--time", "2h"], "parse_time(text='2h'): expected MINUTES, HH:MM:SS"),
        (["--sbatch", "=a100"], "ClusterOptions(sbatch='=a100'): expected an sbatch long option"),
        (["--gpus-per-task", "3"], "must be divisible by the number of devices (3)"),
        (["--tasks", "0"], "ClusterOptions(tasks=0): must be a positive integer or None"),
        (["--shard", "0/2"], "submit(shard=0/2): --submit gives every array task its shard"),
        (["--step-seconds", "0"], "submit(step_seconds=0.0): must be a positive time per step"),
    ],
)
def test_bad_cluster_options_are_usage_errors(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*TINY_ARGS, "--submit", "slurm", "--workdir", str(tmp_path / "w"), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_submit_slurm_off_a_cluster_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*TINY_ARGS, "--submit", "slurm", "--workdir", str(tmp_path / "w")])
    assert exit_info.value.code == 2
    assert "submit(kind='slurm'): sbatch and srun not found on PATH" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_missing_submitit_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*TINY_ARGS, "--submit", "dry-run", "--workdir", str(tmp_path / "w")])
    assert exit_info.value.code == 2
    assert "pip install -e '.[dev]'" in capsys.readouterr().err


def _stand_in_slurm(bin_dir: Path) -> None:
    """``srun`` (submitit checks that it exists) and an ``sbatch`` that keeps each script and prints the next
    job id from 4242."""
    bin_dir.mkdir()
    scripts = {
        "srun": "#!/bin/sh\nexit 0\n",
        "sbatch": '#!/bin/sh\nn=$(ls "$(dirname "$0")"/job_*.sh 2>/dev/null | wc -l)\n'
        'cp "$1" "$(dirname "$0")/job_$n.sh"\necho "Submitted batch job $((4242 + n))"\n',
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)


def test_submit_slurm_submits_the_array_then_the_merge_after_it(tmp_path, capsys, monkeypatch):
    _stand_in_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    workdir = tmp_path / "w"
    args = [*TINY_ARGS, "--submit", "slurm", "--workdir", str(workdir), "--partition", "gpu", "--time", "90"]
    args += ["--merge-partition", "cpu", "--qos", "normal", "--array-parallelism", "1"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "submitted: array job 4242 (2 task(s)), merge job 4243 (afterany)" in out
    array, merge = ((tmp_path / "bin" / f"job_{n}.sh").read_text() for n in (0, 1))
    for line in (
        "--array=0-1%1",
        "--partition=gpu",
        "--gpus-per-node=1",
        "--time=90",
        "--requeue",
        "--qos=normal",
    ):
        assert f"#SBATCH {line}\n" in array
    assert "#SBATCH --dependency=afterany:4242\n" in merge and "#SBATCH --partition=cpu\n" in merge
    # Each array task's pickled call: its shard of the same config, into the work directory.
    config = cli.config_from_args(cli.parse_args(args))
    for index in range(2):
        pickled = workdir / "jobs" / f"4242_{index}" / f"4242_{index}_submitted.pkl"
        task = submitit.helpers.DelayedSubmission.load(pickled).function
        assert isinstance(task, cluster.ShardTask) and task.shard == (index, 2) and task.attempt == 1
        assert task.plan.config == config and task.plan.workdir == workdir
        assert list(task.plan.shards[index]) == runner.shard_groups(config.groups(), (index, 2))
    merge_task = submitit.helpers.DelayedSubmission.load(workdir / "jobs" / "4243" / "4243_submitted.pkl")
    assert isinstance(merge_task.function, cluster.MergeTask) and merge_task.function.workdir == workdir
    assert json.loads((workdir / "config.json").read_text()) == config.to_json()  # checked at submission
    record = json.loads((workdir / "jobs" / "submissions.jsonl").read_text())
    assert (record["kind"], record["array_job"], record["merge_job"]) == ("slurm", "4242", "4243")


def _task_process(job) -> int:
    """The process id of a local job's task (the child of submitit's controller process)."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(job.job_id):  # the parent's process id
            return int(stat_file.parent.name)
    raise AssertionError(f"no task process under controller {job.job_id}")


def _outputs(workdir: Path) -> dict[str, object]:
    """The files the merged summary must share byte for byte with the single-process run, and summary.json
    without the run's facts and timings."""
    out: dict[str, object] = {
        name: (workdir / name).read_bytes() for name in ("summary.csv", "metrics.jsonl", "training.jsonl")
    }
    for log in sorted((workdir / "logs").glob("*.jsonl")):
        out[f"logs/{log.name}"] = log.read_bytes()
    summary = json.loads((workdir / "summary.json").read_text())
    del summary["run"]
    summary["groups"] = [{k: v for k, v in g.items() if not k.endswith("_seconds")} for g in summary["groups"]]
    out["summary.json"] = summary
    return out


def test_local_array_requeued_killed_and_rerun_merges_the_single_process_summary(tmp_path, capsys, monkeypatch):
    # One device per process (faster than the test session's 8 on two cores), the same for every run; this
    # process's backend starts first, with the session's 8 devices, for the tests that follow.
    jax.devices()
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    args = [*TINY_ARGS, "--compile-cache", str(tmp_path / "cache")]
    single = [sys.executable, "-m", "experiments.ordering", *args, "--workdir", str(tmp_path / "whole")]
    single += ["--checkpoint-every", "0"]  # checkpoints change no result: none where nothing is killed
    subprocess.run(single, check=True, capture_output=True, cwd=cluster.ROOT)  # the single-process run
    config = cli.config_from_args(cli.parse_args(args))
    options = cluster.ClusterOptions(gpus_per_task=0, tasks=2, time_minutes=10)
    plan = cluster.make_plan(
        config, tmp_path / "array", options, checkpoint_steps=20, compile_cache=tmp_path / "cache"
    )
    groups = [shard[0].name for shard in plan.shards]
    runner.prepare(config, plan.workdir, 1)
    array = cluster.LocalArray(plan, poll_seconds=0.05)
    array.poll()  # starts both tasks, each a process
    # Task 0 gets the time-limit signal (SIGUSR2: submitit requeues it), task 1 is killed (a lost node), each
    # once its group has a checkpoint and 180 of its 200 steps are left.
    pending = dict(zip(groups, zip(array.jobs, (signal.SIGUSR2, signal.SIGKILL), strict=True), strict=True))
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for name, (job, sig) in list(pending.items()):
            if any(p.name.isdigit() for p in (plan.workdir / "checkpoints" / name).glob("*")):
                os.kill(_task_process(job), sig)
                del pending[name]
        time.sleep(0.02)
    assert not pending
    results = array.wait()
    assert results[0]["attempt"] == 2 and results[0]["trained"] == 1  # requeued, then resumed
    assert list(results[0]["resumed"]) == [groups[0]] and results[0]["resumed"][groups[0]] >= 20
    assert isinstance(results[1], Exception) and list(array.failures()) == [1]
    assert not (plan.workdir / "groups" / f"{groups[1]}.json").exists()
    capsys.readouterr()

    # Rerunning the command trains what is left (task 1 resumes from its checkpoint), then merges.
    rerun = [*args, "--workdir", str(plan.workdir), "--checkpoint-every", "20", "--submit", "local"]
    rerun += ["--gpus-per-task", "0", "--tasks", "2"]
    assert cli.main(rerun) == 0
    assert "per-token accuracy: mean [95% interval] over seeds" in capsys.readouterr().out
    logs = "".join(p.read_text() for p in (plan.workdir / "jobs" / "local").glob("*_log.out"))
    assert f"shard 1/2, attempt 1: 1 group(s) ({groups[1]}) into {plan.workdir}; {groups[1]} resumes" in logs
    assert "shard 0/2: 0 trained, 1 already there" in logs
    assert _outputs(plan.workdir) == _outputs(tmp_path / "whole")


def test_the_merge_job_fails_naming_the_unfinished_groups(tmp_path, capsys):
    config = cli.config_from_args(cli.parse_args(TINY_ARGS))
    runner.prepare(config, tmp_path, 8)
    with pytest.raises(RuntimeError, match="--merge .* exited with status 2"):
        cluster.MergeTask(tmp_path)()
    assert (
        "2 group(s) not finished: reverse-encoder-none, reverse-encoder-sinusoidal" in capsys.readouterr().err
    )


def test_projection_from_timed_steps_names_where_it_was_timed(tmp_path):
    config = cli.config_from_args(cli.parse_args(TINY_ARGS))
    options = cluster.ClusterOptions(gpus_per_task=2, tasks=2, array_parallelism=1, time_minutes=60)
    plan = cluster.make_plan(config, tmp_path, options)
    timed = {
        "device": "cpu (cpu)",
        "device_count": 8,
        "groups": [
            {"group": g.name, "hours": hours} for g, hours in zip(config.groups(), (1.5, 0.25), strict=True)
        ],
    }
    projection = submit.project(plan, timed=timed)
    assert projection["source"].startswith("timed here by --estimate on 8 × cpu (cpu)")
    assert projection["tasks"] == [1.5, 0.25] and projection["device_hours"] == 2 * 1.75
    assert projection["wall_hours"] == 1.75 and projection["requeues"] == 1  # one at a time; 1.5 h > 1 h
    assert submit.project(plan)["device_hours"] is None  # no step time: no hours
