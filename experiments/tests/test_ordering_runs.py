"""Long and distributed runs of the ordering experiment: checkpoints and resuming after a kill, the training
log, damaged files and checkpoints, diverged runs, outputs in configuration order whatever the history,
locks of the work directory, validation before anything is written, the command line's usage errors,
``--estimate``, ``--shard`` and ``--merge``. Tiny configs on the test session's 8 host devices (the same tiny
model as the experiment's smoke tests, so that compiled programs are shared)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ordering_tiny import tiny_config

from experiments.ordering import __main__ as cli
from experiments.ordering import config as config_lib
from experiments.ordering import estimate, locks, runner, train
from experiments.ordering.checkpoint import GroupCheckpoints, checkpoint_every, json_safe

#: What these tests change in the shared tiny configuration.
RUNS_TINY = {"steps": 40, "runs": (("reverse", "encoder"),), "schemes": ("none",)}
TINY_ARGS = "--task reverse --schemes none --seeds 0 1 --steps 40 --check-every 10 --warmup-steps 5".split()
TINY_ARGS += "--batch-size 16 --validation-per-length 2 --test-per-length 2".split()
TINY_ARGS += "--train-length 4 --test-length 8 --layers 1 --width 16 --heads 2 --no-progress".split()


def _tiny(**overrides) -> config_lib.ExperimentConfig:
    return tiny_config(**{**RUNS_TINY, **overrides})


class _Killed(Exception):
    pass


def _train(config, checkpoints, kill_at=None):
    setup = train.setup_group(config, config.groups()[0], train.make_mesh())

    def progress(step, losses, accuracies):
        if step == kill_at:
            raise _Killed

    return train.train_group(setup, progress=progress, checkpoints=checkpoints)


def _strip_timings(record):
    return {k: v for k, v in json_safe(record).items() if not k.endswith("_seconds")}


def _fingerprint(config):
    return config.group_fingerprint(config.groups()[0], train.make_mesh().size)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The tiny group trained without a kill: its config, record and training log."""
    config, directory = _tiny(), tmp_path_factory.mktemp("uninterrupted")
    checkpoints = GroupCheckpoints(directory / "ck", _fingerprint(config), every=20, log_path=directory / "log")
    record = _train(config, checkpoints)
    assert not (directory / "ck" / "40").exists()  # none at the last step: the results follow
    return config, record, (directory / "log").read_text()


def test_resume_after_a_kill_continues_bit_for_bit(tmp_path, uninterrupted):
    config, expected, log = uninterrupted
    checkpoints = GroupCheckpoints(tmp_path / "ck", _fingerprint(config), every=20, log_path=tmp_path / "log")
    with pytest.raises(_Killed):  # killed after step 30: the checkpoint of step 20 survives
        _train(config, checkpoints, kill_at=30)
    assert (tmp_path / "ck" / "20").is_dir()
    assert len((tmp_path / "log").read_text().splitlines()) == 3  # appended as produced
    resumed = _train(config, checkpoints)
    assert _strip_timings(resumed) == _strip_timings(expected)  # bitwise: floats compared exactly
    assert (tmp_path / "log").read_text() == log
    assert [json.loads(line)["step"] for line in log.splitlines()] == [10, 20, 30, 40]
    other = GroupCheckpoints(tmp_path / "ck", "another", every=20)
    with pytest.raises(ValueError, match=r"checkpoint .*ck/20 belongs to another config"):
        other.resume(None)


def test_damaged_checkpoints_are_named_set_aside_and_resumed_from_the_previous_or_retrained(
    tmp_path, capsys, uninterrupted
):
    config, expected, log = uninterrupted
    ck, aside = tmp_path / "ck", tmp_path / "ck.corrupt"
    checkpoints = GroupCheckpoints(ck, _fingerprint(config), every=10, log_path=tmp_path / "log")
    with pytest.raises(_Killed):  # saves steps 10, 20 and 30; keeps the last two, each with its hash
        _train(config, checkpoints, kill_at=30)
    assert sorted(p.name for p in ck.iterdir()) == ["20", "20.sha256.json", "30", "30.sha256.json"]
    assert checkpoints.verify(30) is None

    # One bit flipped in the array data of the latest checkpoint: named, set aside, resumed from step 20.
    data = max((p for p in (ck / "30" / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    data.write_bytes(bytes(damaged))
    capsys.readouterr()
    resumed = _train(config, checkpoints)
    err = capsys.readouterr().err
    assert f"checkpoint {ck / '30'} has a damaged file {data} (its SHA-256 differs" in err
    assert f"set aside as {aside / '30'}; resuming from the checkpoint of step 20" in err
    assert (aside / "30" / "state").is_dir() and (aside / "30.sha256.json").is_file()
    assert _strip_timings(resumed) == _strip_timings(expected) and (tmp_path / "log").read_text() == log

    # Truncated metadata in both kept checkpoints (20, and 30 saved again): each named; the group retrains.
    for step in (20, 30):
        metadata = ck / str(step) / "state" / "_METADATA"
        metadata.write_text(metadata.read_text()[:50])
    retrained = _train(config, checkpoints)
    err = capsys.readouterr().err
    for step, then in (
        (30, "resuming from the checkpoint of step 20"),
        (20, "retraining the group from the start"),
    ):
        named = f"checkpoint {ck / str(step)} has a damaged file {ck / str(step) / 'state' / '_METADATA'}"
        assert named in err and then in err
    assert sorted(p.name for p in aside.iterdir() if p.is_dir()) == ["20", "30", "30-2"]
    assert _strip_timings(retrained) == _strip_timings(expected) and (tmp_path / "log").read_text() == log

    # A checkpoint without its hash (a save cut short) is not trusted either.
    (ck / "30.sha256.json").unlink()
    assert checkpoints.verify(30) == "has no content hash (30.sha256.json is missing: a save cut short)"


def test_run_checkpoints_then_removes_them_and_logs_every_chunk(tmp_path):
    result = runner.run(_tiny(), tmp_path, progress=False, checkpoint_steps=10)
    assert result["trained"] == 1
    assert not (tmp_path / "checkpoints" / "reverse-encoder-none").exists()
    lines = (tmp_path / "logs" / "reverse-encoder-none.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [10, 20, 30, 40]
    with pytest.raises(ValueError, match=r"checkpoint_every\(steps=15\): must be 0 .* multiple of the check"):
        runner.run(_tiny(), tmp_path, progress=False, checkpoint_steps=15)
    assert checkpoint_every(_tiny(check_every=30, steps=60), None) == 1020


def test_nothing_is_written_before_every_setting_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"setup_group\(batch_size=12\): the 6 rows .* devices \(8\)"):
        runner.run(_tiny(batch_size=12), tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()


def test_refusing_another_config_names_the_settings_that_differ(tmp_path):
    runner.prepare(_tiny(), tmp_path, 8)
    with pytest.raises(ValueError, match=r"different config \(seeds: \[0, 1\] → \[0, 2\]; steps: 40 → 80\)"):
        runner.prepare(_tiny(steps=80, seeds=(0, 2)), tmp_path, 8)


def _run_diverged(workdir, capsys):
    status = cli.main([*TINY_ARGS, "--steps", "20", "--learning-rate", "1e6", "--workdir", str(workdir)])
    return status, capsys.readouterr()


def test_a_diverged_run_is_marked_everywhere_and_exits_non_zero(tmp_path, capsys):
    status, captured = _run_diverged(tmp_path, capsys)
    assert status == cli.DIVERGED_STATUS == 3  # after writing everything
    record = json.loads((tmp_path / "groups" / "reverse-encoder-none.json").read_text())
    first = next(i for i, losses in enumerate(record["curve"]["loss"]) if None in losses)
    seeds = [
        s for i, s in enumerate(record["seeds"]) if any(losses[i] is None for losses in record["curve"]["loss"])
    ]
    assert seeds == [0, 1]
    # Each seed's first non-finite step lies in the first chunk (10 steps) whose mean loss is not finite.
    exact = record["first_non_finite_step"]
    for i in range(2):
        chunk = next(j for j, losses in enumerate(record["curve"]["loss"]) if losses[i] is None)
        assert chunk * 10 < exact[i] <= (chunk + 1) * 10
    step = min(exact)
    summary = json.loads((tmp_path / "summary.json").read_text())
    expected = {
        "group": "reverse-encoder-none",
        "seeds": seeds,
        "first_check": (first + 1) * 10,
        "first_steps": [step, step],
    }
    assert summary["diverged"] == [expected]
    assert summary["groups"][0]["divergence"] == {k: v for k, v in expected.items() if k != "group"}
    assert all(row["diverged_seeds"] == [0, 1] for row in summary["rows"])
    text = f"seeds 0, 1; loss not finite from step {step}"
    report = (tmp_path / "report.md").read_text()
    assert "## DIVERGED: groups whose training loss became non-finite" in report
    assert f"| none (DIVERGED: {text}) |" in report  # in the tables
    assert f"DIVERGED (training loss not finite): none ({text})" in report  # in the findings
    assert "| reverse (encoder) | none (DIVERGED) |" in report  # the reference aggregation
    assert "- reverse (encoder) (DIVERGED: not a trained model): largest per-example excess" in report
    assert f"none (DIVERGED: {text})" in captured.out  # the printed tables
    assert f"DIVERGED: group reverse-encoder-none: training loss not finite from step {step} (seeds 0, 1)" in (
        captured.err
    )
    assert "diverged_seeds" in (tmp_path / "summary.csv").read_text().splitlines()[0]

    # Non-finite numbers are written as valid JSON (null), in the group file and the training log.
    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")

    json.loads((tmp_path / "groups" / "reverse-encoder-none.json").read_text(), parse_constant=refuse)
    json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)
    for line in (tmp_path / "logs" / "reverse-encoder-none.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=refuse)
    assert json_safe([math.inf, -math.inf, 1.5, "x"]) == [None, None, 1.5, "x"]
    # A rerun (everything resumed) and a merge report the same divergence and exit status.
    assert _run_diverged(tmp_path, capsys)[0] == 3
    assert cli.main(["--merge", str(tmp_path)]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--learning-rate", "inf"], "learning_rates=inf): each learning rate must be a positive finite"),
        (["--learning-rate", "-1"], "learning_rates=-1.0): each learning rate must be a positive finite"),
        (["--steps", "0"], "steps=0): must be a positive integer"),
        (
            ["--steps", "10", "--warmup-steps", "10"],
            "warmup_steps=10): must be less than the budget of reverse (encoder), 10 steps",
        ),
        (["--batch-size", "12"], "the 6 rows of a batch (two examples per row) must be divisible"),
        (["--checkpoint-every", "15"], "checkpoint_every(steps=15)"),
        (["--shard", "2/2"], "argument --shard: needs 0 <= I < N; got '2/2'"),
        (["--shard", "one"], "argument --shard: expected I/N with integers"),
        (
            ["--workdir", "/dev/null/x"],
            "run(workdir='/dev/null/x'): cannot be created, '/dev/null' is not a directory",
        ),
    ],
)
def test_usage_errors_exit_with_code_2_and_write_nothing(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*TINY_ARGS, "--workdir", str(tmp_path / "w"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m experiments.ordering") and message in err
    assert "Traceback" not in err and not (tmp_path / "w").exists()


def test_estimate_projects_hours_without_training(tmp_path, capsys):
    config = _tiny(schemes=("none", "sinusoidal"), learning_rates=(1e-3, 3e-3), steps=1000)
    result = estimate.estimate(config, steps=2, repeats=2)
    assert [r["group"] for r in result["groups"]] == [g.name for g in config.groups()]
    for row in result["groups"]:
        assert row["seconds_per_step"] > 0 and row["steps"] == 1000
        expected = (1000 * row["seconds_per_step"] + 100 * row["seconds_per_check"]) / 3600
        assert math.isclose(row["hours"], expected)
    # Groups that differ only in their learning rate share one timing.
    assert result["groups"][0]["seconds_per_step"] == result["groups"][1]["seconds_per_step"]
    assert math.isclose(result["hours"], sum(r["hours"] for r in result["groups"]))
    assert cli.main([*TINY_ARGS, "--workdir", str(tmp_path / "w"), "--estimate"]) == 0
    captured = capsys.readouterr()
    assert "Projected training time of preset 'quick' on 8 × cpu" in captured.out and "total" in captured.out
    assert "timed 1/1: reverse/encoder/none:" in captured.err  # progress while a long preset compiles
    assert not (tmp_path / "w").exists()


#: The outputs that must not depend on a run's history.
OUTPUTS = ("summary.json", "metrics.jsonl", "training.jsonl", "summary.csv", "report.md")
TWO_SCHEMES = [*TINY_ARGS[:3], "none", "sinusoidal", *TINY_ARGS[4:]]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The two-group tiny run, uninterrupted."""
    workdir = tmp_path_factory.mktemp("whole")
    assert cli.main([*TWO_SCHEMES, "--workdir", str(workdir)]) == 0
    return workdir


def _assert_same_outputs(workdir, reference):
    """Byte for byte, apart from what times the run: summary.json's ``run`` facts and ``*_seconds``, and the
    report's first line (command and wall time)."""
    for name in OUTPUTS:
        texts = [(d / name).read_text() for d in (workdir, reference)]
        if name == "summary.json":
            texts = [json.loads(t) for t in texts]
            for summary in texts:
                summary.pop("run")
                for group in summary["groups"]:
                    for key in [k for k in group if k.endswith("_seconds")]:
                        group.pop(key)
            texts = [json.dumps(t, indent=1) for t in texts]
        if name == "report.md":
            texts = [
                "\n".join(line for line in t.splitlines() if not line.startswith("Command: ")) for t in texts
            ]
        assert texts[0] == texts[1], name
    for png in reference.glob("*.png"):
        assert (workdir / png.name).read_bytes() == png.read_bytes(), png.name


def test_the_written_findings_are_regenerated_from_the_summary_alone(whole):
    """What the committed results' test checks: the comparisons recomputed from the summary's rows, and the
    findings generated from its groups and comparisons, are those written."""
    from experiments.ordering import report, summary

    config = config_lib.ExperimentConfig.from_json(json.loads((whole / "config.json").read_text()))
    written = json.loads((whole / "summary.json").read_text())
    assert summary.compare_schemes(written["rows"]) == written["comparisons"]
    lines = report.findings(config, written["groups"], written["comparisons"])
    assert lines[0].startswith(
        "- The findings below state 4 paired differences in per-token accuracy, 2 distinct"
    )
    text = (whole / "report.md").read_text()
    assert all(line in text for line in lines)
    assert written["statistics"]["families"]["token_accuracy"]["distinct"] == 2


def test_a_retrained_group_and_stale_temporaries_leave_the_outputs_as_uninterrupted(tmp_path, capsys, whole):
    workdir = tmp_path / "w"
    shutil.copytree(whole, workdir)
    path = workdir / "groups" / "reverse-encoder-none.json"  # the first group: retrained after the second loads
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # truncated, as by a full disk
    stale = [  # left by a kill during the final write, a group's write and a checkpoint's save
        workdir / ".training.jsonl.tmp4242",
        workdir / "groups" / ".reverse-encoder-sinusoidal.json.tmp4242",
        workdir / "checkpoints" / "reverse-encoder-none" / "40.orbax-checkpoint-tmp-17",
    ]
    for p in stale[:2]:
        p.write_text("partial")
    stale[2].mkdir(parents=True)
    capsys.readouterr()
    assert cli.main([*TWO_SCHEMES, "--workdir", str(workdir)]) == 0
    err = capsys.readouterr().err
    assert f"group file {path} is truncated or damaged" in err
    assert "removed 3 temporary file(s) left by an interrupted run: " in err
    assert all(str(p) in err and not p.exists() for p in stale)
    assert json.loads((workdir / "summary.json").read_text())["run"]["groups_trained_now"] == 1
    _assert_same_outputs(workdir, whole)


def test_shards_run_side_by_side_a_second_run_exits_2_naming_the_holder(tmp_path, capsys, whole):
    groups = _tiny(schemes=("none", "sinusoidal", "learned")).groups()
    shards = [runner.shard_groups(groups, (i, 2)) for i in range(2)]
    assert sorted(g.name for s in shards for g in s) == sorted(g.name for g in groups)
    assert [g.name for g in shards[0]] == [groups[0].name, groups[2].name]

    workdir = tmp_path / "s"
    args = [*TWO_SCHEMES, "--workdir", str(workdir)]
    holder = "python -m experiments.ordering --shard 0/2"
    with locks.hold(workdir, ["reverse-encoder-none"], command=holder):  # shard 0 is running
        assert cli.main([*args, "--shard", "1/2"]) == 0  # shard 1 runs beside it
        assert "--merge" in capsys.readouterr().out and not (workdir / "summary.json").exists()
        lock = workdir / "locks" / "reverse-encoder-none.lock"
        for second in ([*args, "--shard", "0/2"], args, ["--merge", str(workdir)]):
            with pytest.raises(SystemExit) as exit_info:
                cli.main(second)
            assert exit_info.value.code == 2
            err = capsys.readouterr().err
            assert (
                f"group reverse-encoder-none is in use by pid {os.getpid()} on {socket.gethostname()} since "
                in err
            )
            assert f": {holder} (lock {lock}); wait for that run to end" in err
    assert lock.read_text() == ""  # released: no holder named
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--merge", str(workdir)])
    assert exit_info.value.code == 2
    assert "1 group(s) not finished: reverse-encoder-none" in capsys.readouterr().err

    # Shard 1 alone, then a plain rerun: the outputs of an uninterrupted run.
    shutil.copytree(workdir, tmp_path / "plain")
    assert cli.main([*args[:-1], str(tmp_path / "plain")]) == 0
    _assert_same_outputs(tmp_path / "plain", whole)
    # Both shards, then --merge: the same.
    assert cli.main([*args, "--shard", "0/2"]) == 0
    assert cli.main(["--merge", str(workdir)]) == 0
    _assert_same_outputs(workdir, whole)
    # The summary names the machines the group records name (the training ones), not the merging one.
    device = json.loads((whole / "summary.json").read_text())["run"]["device"]
    for i, path in enumerate(sorted((workdir / "groups").glob("*.json"))):
        record = json.loads(path.read_text())
        assert record["device"] == device
        path.write_text(json.dumps({**record, "device": f"machine {i}"}))
    assert cli.main(["--merge", str(workdir)]) == 0
    assert json.loads((workdir / "summary.json").read_text())["run"]["device"] == "machine 0; machine 1"


def test_a_lock_holds_across_processes_and_a_killed_holder_leaves_none(tmp_path):
    code = (
        "import sys, time\nfrom experiments.ordering import locks\n"
        "with locks.hold(sys.argv[1], ['g'], command='the holder'):\n    print('held', flush=True)\n    time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        message = (
            rf"group g is in use by pid {holder.pid} on {socket.gethostname()} since .*: the holder \(lock "
        )
        with pytest.raises(locks.WorkdirBusy, match=message):
            with locks.hold(tmp_path, ["g"], command="second"):
                pass
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with locks.hold(tmp_path, ["g"], command="third"):  # the kill released it
        assert (tmp_path / "locks" / "g.lock").read_text().endswith(": third")
