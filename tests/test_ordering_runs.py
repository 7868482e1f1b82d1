"""Long and distributed runs of the ordering experiment: checkpoints and resuming after a kill, the training
log, damaged files, validation before anything is written, the command line's usage errors, ``--estimate``,
``--shard`` and ``--merge``. Tiny configs on the test session's 8 host devices (the same tiny model as the
experiment's smoke tests, so that compiled programs are shared)."""

from __future__ import annotations

import json
import math

import pytest
from ordering_tiny import tiny_config

from experiments.ordering import __main__ as cli
from experiments.ordering import config as config_lib
from experiments.ordering import estimate, runner, train
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


def test_resume_after_a_kill_continues_bit_for_bit(tmp_path):
    config = _tiny()
    fingerprint = config.group_fingerprint(config.groups()[0], train.make_mesh().size)

    def checkpoints(name):
        return GroupCheckpoints(tmp_path / name / "ck", fingerprint, every=20, log_path=tmp_path / name / "log")

    uninterrupted = _train(config, checkpoints("a"))
    with pytest.raises(_Killed):  # killed after step 30: the checkpoint of step 20 survives
        _train(config, checkpoints("b"), kill_at=30)
    assert (tmp_path / "b" / "ck" / "20").is_dir()
    assert len((tmp_path / "b" / "log").read_text().splitlines()) == 3  # appended as produced
    resumed = _train(config, checkpoints("b"))
    assert _strip_timings(resumed) == _strip_timings(uninterrupted)  # bitwise: floats compared exactly
    assert (tmp_path / "b" / "log").read_text() == (tmp_path / "a" / "log").read_text()
    assert [json.loads(line)["step"] for line in (tmp_path / "a" / "log").read_text().splitlines()] == [
        10,
        20,
        30,
        40,
    ]
    assert not (tmp_path / "a" / "ck" / "40").exists()  # none at the last step: the results follow
    other = GroupCheckpoints(tmp_path / "b" / "ck", "another", every=20)
    with pytest.raises(ValueError, match=r"checkpoint .*ck/20 belongs to another config"):
        other.resume(None)


def test_run_checkpoints_then_removes_them_and_logs_every_chunk(tmp_path):
    result = runner.run(_tiny(), tmp_path, progress=False, checkpoint_steps=10)
    assert result["trained"] == 1
    assert not (tmp_path / "checkpoints" / "reverse-encoder-none").exists()
    lines = (tmp_path / "logs" / "reverse-encoder-none.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [10, 20, 30, 40]
    with pytest.raises(ValueError, match=r"checkpoint_every\(steps=15\): must be 0 .* multiple of the check"):
        runner.run(_tiny(), tmp_path, progress=False, checkpoint_steps=15)
    assert checkpoint_every(_tiny(check_every=30, steps=60), None) == 1020


def test_damaged_group_file_is_named_and_retrained(tmp_path, capsys):
    config = _tiny()
    runner.run(config, tmp_path, progress=False)
    path = tmp_path / "groups" / "reverse-encoder-none.json"
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # truncated, as by a full disk
    again = runner.run(config, tmp_path, progress=False)
    assert f"group file {path} is truncated or damaged" in capsys.readouterr().err
    assert (again["trained"], again["skipped"]) == (1, 0)
    assert json.loads(path.read_text())["test"] == json.loads(good)["test"]


def test_nothing_is_written_before_every_setting_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"setup_group\(batch_size=12\): the 6 rows .* devices \(8\)"):
        runner.run(_tiny(batch_size=12), tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()


def test_refusing_another_config_names_the_settings_that_differ(tmp_path):
    runner.prepare(_tiny(), tmp_path, 8)
    with pytest.raises(ValueError, match=r"different config \(seeds: \[0, 1\] → \[0, 2\]; steps: 40 → 80\)"):
        runner.prepare(_tiny(steps=80, seeds=(0, 2)), tmp_path, 8)


def test_non_finite_numbers_are_written_as_valid_json(tmp_path):
    # A learning rate this large overflows the parameters: the losses become NaN.
    runner.run(_tiny(learning_rates=(1e38,), steps=20), tmp_path, progress=False)

    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")

    record = json.loads((tmp_path / "groups" / "reverse-encoder-none.json").read_text(), parse_constant=refuse)
    assert None in record["curve"]["loss"][-1]
    for line in (tmp_path / "logs" / "reverse-encoder-none.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=refuse)
    assert json_safe([math.inf, -math.inf, 1.5, "x"]) == [None, None, 1.5, "x"]


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


def test_shards_partition_the_groups_and_merge_writes_the_summary(tmp_path, capsys):
    groups = _tiny(schemes=("none", "sinusoidal", "learned")).groups()
    shards = [runner.shard_groups(groups, (i, 2)) for i in range(2)]
    assert sorted(g.name for s in shards for g in s) == sorted(g.name for g in groups)
    assert [g.name for g in shards[0]] == [groups[0].name, groups[2].name]

    args = [*TINY_ARGS[:3], "none", "sinusoidal", *TINY_ARGS[4:], "--workdir", str(tmp_path / "s")]
    assert cli.main([*args, "--shard", "1/2"]) == 0
    assert "--merge" in capsys.readouterr().out and not (tmp_path / "s" / "summary.json").exists()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--merge", str(tmp_path / "s")])
    assert exit_info.value.code == 2
    assert "1 group(s) not finished: reverse-encoder-none" in capsys.readouterr().err
    assert cli.main([*args, "--shard", "0/2"]) == 0
    assert cli.main(["--merge", str(tmp_path / "s")]) == 0
    assert cli.main([*args[:-1], str(tmp_path / "whole")]) == 0
    for name in ("metrics.jsonl", "training.jsonl"):
        assert (tmp_path / "s" / name).read_text() == (tmp_path / "whole" / name).read_text()
