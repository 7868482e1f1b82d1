"""Smoke tests of the ordering experiment: tiny configs trained for a few steps on 8 host devices.

Every scheme on one task, every task on one scheme, the decoder mode once; the outputs must exist and be
well-formed. Plus: the model without positions against its analytic ceiling, resuming after an
interruption, determinism, the same run on one device, and bad configurations.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments.ordering import __main__ as cli
from experiments.ordering import config as config_lib
from experiments.ordering import stats, tasks, train
from experiments.ordering.model import ModelConfig

TINY = {
    "model": ModelConfig(num_layers=1, width=16, num_heads=2, mlp_ratio=2),
    "train_max_length": 4,
    "test_max_length": 8,
    "batch_size": 16,
    "max_steps": 20,
    "check_every": 10,
    "validation_per_length": 2,
    "test_per_length": 2,
    "seeds": (0, 1),
    "warmup_steps": 5,
    "learning_rate": 3e-3,
}


def _tiny(**overrides) -> config_lib.ExperimentConfig:
    return config_lib.preset("quick", **{**TINY, **overrides})


@pytest.fixture(scope="module")
def every_scheme(tmp_path_factory):
    config = _tiny(runs=(("sort", "encoder"),), schemes=tuple(config_lib.SCHEMES))
    workdir = tmp_path_factory.mktemp("every_scheme")
    return config, workdir, cli.run(config, workdir, progress=False)


@pytest.fixture(scope="module")
def every_task(tmp_path_factory):
    runs = tuple((name, "encoder") for name in tasks.TASKS) + (("reverse", "decoder"),)
    config = _tiny(runs=runs, schemes=("rotary",))
    workdir = tmp_path_factory.mktemp("every_task")
    return config, workdir, cli.run(config, workdir, progress=False)


def _check_outputs(config: config_lib.ExperimentConfig, workdir: Path, result: dict) -> None:
    groups = [(t, m, s) for t, m in config.runs for s in config.schemes]
    assert result["trained"] == len(groups) and result["skipped"] == 0
    for name in ("config.json", "metrics.jsonl", "training.jsonl", "summary.json", "summary.csv", "report.md"):
        assert (workdir / name).stat().st_size > 0, name
    assert config_lib.ExperimentConfig.from_json(json.loads((workdir / "config.json").read_text())) == config
    for task, mode, scheme in groups:
        record = json.loads((workdir / "groups" / f"{task}-{mode}-{scheme}.json").read_text())
        assert record["device_count"] == len(jax.devices()) == 8
        assert len(record["steps_to_criterion"]) == len(config.seeds)
        assert all(s is None or 0 < s <= config.max_steps for s in record["steps_to_criterion"])
        accuracy = np.asarray(record["test"]["token_accuracy"])
        assert accuracy.shape == (len(config.seeds), config.test_max_length)
        assert ((accuracy >= 0) & (accuracy <= 1)).all()
        assert ("teacher_forced_token_accuracy" in record["test"]) == (mode == "decoder")
        assert ("ceiling" in record["test"]) == (mode == "encoder")

    summary = json.loads((workdir / "summary.json").read_text())
    n_bands = len(stats.bands(config.train_max_length, config.test_max_length))
    n_metrics = {"encoder": 2, "decoder": 4}
    assert len(summary["rows"]) == sum(n_bands * n_metrics[m] for _, m, _ in groups)
    for row in summary["rows"]:
        assert row["n"] == len(config.seeds)
        assert row["min"] <= row["mean"] <= row["max"] and np.isfinite(row["ci"]) and row["ci"] >= 0
    with open(workdir / "summary.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(summary["rows"]) and {"task", "scheme", "band", "mean", "ci"} <= set(
        csv_rows[0]
    )

    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(groups) * len(config.seeds) * config.test_max_length
    assert {"task", "mode", "scheme", "seed", "length", "token_accuracy"} <= set(json.loads(lines[0]))

    report = (workdir / "report.md").read_text()
    for task, mode in config.runs:
        assert f"### {task} ({mode}" in report
        for suffix in ("accuracy", "training"):
            png = workdir / f"{suffix}_{task}_{mode}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({png.name})" in report


def test_every_scheme_on_one_task(every_scheme):
    config, workdir, result = every_scheme
    _check_outputs(config, workdir, result)
    report = (workdir / "report.md").read_text()
    assert "analytic ceiling without positions" in report
    assert "randomized_learned" in report


def test_every_task_and_the_decoder_on_one_scheme(every_task):
    config, workdir, result = every_task
    _check_outputs(config, workdir, result)
    assert "greedy" in (workdir / "report.md").read_text()


def test_every_scheme_is_evaluated_on_the_same_examples(every_scheme):
    config, workdir, _ = every_scheme
    mesh = train.make_mesh()
    sets = {
        name: train.evaluation_sets(config, tasks.get_task("sort"), "encoder", randomized, mesh)[1]
        for name, randomized in (("fixed", False), ("randomized", True))
    }
    for field in ("inputs", "lengths", "targets"):
        np.testing.assert_array_equal(
            getattr(sets["fixed"].examples, field), getattr(sets["randomized"].examples, field)
        )
    assert not np.array_equal(
        np.asarray(sets["fixed"].batch.positions), np.asarray(sets["randomized"].batch.positions)
    )
    # The evaluation rows are sharded over the 8 devices.
    assert len(sets["fixed"].batch.tokens.sharding.device_set) == 8


def test_model_without_positions_reaches_but_never_exceeds_its_ceiling():
    # Same shapes as the other tiny runs, so the compiled training program is reused.
    config = _tiny(runs=(("reverse", "encoder"),), schemes=("none",), max_steps=200, test_per_length=8)
    setup = train.setup_group(config, "reverse", "encoder", "none", train.make_mesh())
    record = train.train_group(setup)
    ceiling = np.asarray(record["test"]["ceiling_per_example"])
    accuracy = np.asarray(record["test"]["token_accuracy_per_example"])
    assert accuracy.shape == (len(config.seeds), 8 * config.test_max_length)
    assert (accuracy <= ceiling + 1e-12).all()  # never above, for any example
    assert (ceiling - accuracy).mean() < 0.02  # and reached
    assert record["stopped_by_cap"] == [True, True]


def test_resume_after_an_interruption_gives_the_uninterrupted_results(tmp_path):
    config = _tiny(runs=(("reverse", "encoder"),), schemes=("none", "sinusoidal"), max_steps=10)
    interrupted = cli.run(config, tmp_path / "a", progress=False, stop_after=1)
    assert interrupted["trained"] == 1 and interrupted["rows"] is None
    assert len(list((tmp_path / "a" / "groups").glob("*.json"))) == 1
    assert not (tmp_path / "a" / "summary.json").exists()
    first = (tmp_path / "a" / "groups" / "reverse-encoder-none.json").read_text()
    resumed = cli.run(config, tmp_path / "a", progress=False)
    assert (resumed["trained"], resumed["skipped"]) == (1, 1)
    assert (tmp_path / "a" / "groups" / "reverse-encoder-none.json").read_text() == first
    fresh = cli.run(config, tmp_path / "b", progress=False)
    for a, b in zip(resumed["records"], fresh["records"], strict=True):
        assert a["test"] == b["test"] and a["curve"] == b["curve"]  # identical, not just close
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
    with pytest.raises(
        ValueError, match=r"run\(workdir=.*\): the directory holds results of a different config"
    ):
        cli.run(_tiny(runs=(("reverse", "encoder"),), schemes=("none",), max_steps=10), tmp_path / "a")


def test_one_device_gives_the_eight_device_results(every_task):
    config, workdir, _ = every_task
    single = train.make_mesh(jax.devices()[:1])
    setup = train.setup_group(config, "majority", "encoder", "rotary", single)
    assert len(setup.test.batch.tokens.sharding.device_set) == 1
    record = train.train_group(setup)
    eight = json.loads((workdir / "groups" / "majority-encoder-rotary.json").read_text())
    assert record["device_count"] == 1 and eight["device_count"] == 8
    np.testing.assert_allclose(record["curve"]["loss"], eight["curve"]["loss"], rtol=1e-3)
    np.testing.assert_allclose(record["test"]["token_accuracy"], eight["test"]["token_accuracy"], atol=0.1)


def test_evaluation_in_blocks_gives_the_same_metrics(every_task):
    config, workdir, _ = every_task
    setup = train.setup_group(config, "reverse", "decoder", "rotary", train.make_mesh())
    assert setup.test.block_rows == setup.test.batch.tokens.shape[0] == 16  # the whole set at once
    blocked = dataclasses.replace(setup, test=dataclasses.replace(setup.test, block_rows=8))
    record = train.train_group(blocked)
    whole = json.loads((workdir / "groups" / "reverse-decoder-rotary.json").read_text())
    assert record["test"] == whole["test"]


def test_evaluation_block_rows_bound_memory():
    full = config_lib.PRESETS["full"]
    # 8 heads, 5 seeds, rows of 1002 tokens: a few rows per block, a multiple of the device count.
    per_row = 5 * 8 * 1002**2
    assert train.evaluation_block_rows(full, rows=2000, row_length=1002, devices=8) == 2**30 // per_row // 8 * 8
    assert train.evaluation_block_rows(full, rows=2000, row_length=1002, devices=1) == 2**30 // per_row == 26
    assert train.evaluation_block_rows(config_lib.PRESETS["quick"], rows=320, row_length=82, devices=2) == 320


def test_command_line_overrides():
    args = cli.parse_args(
        ["--task", "reverse", "sort", "--mode", "decoder", "--steps", "30", "--seeds", "4", "5"]
    )
    config = cli.config_from_args(args)
    assert config.runs == (("reverse", "decoder"), ("sort", "decoder"))
    assert (config.max_steps, config.seeds) == (30, (4, 5))
    assert config.max_steps % config.check_every == 0
    quick = cli.config_from_args(cli.parse_args([]))
    assert quick == config_lib.PRESETS["quick"]
    assert len(quick.seeds) >= 3 and ("sort", "decoder") in quick.runs and ("majority", "encoder") in quick.runs
    assert set(quick.schemes) == set(config_lib.SCHEMES) - set(config_lib.RELATIVE_SCHEMES)
    full = config_lib.PRESETS["full"]
    assert set(full.schemes) == set(config_lib.SCHEMES)
    assert len(full.seeds) >= 5 and full.model == ModelConfig(5, 64, 8, 4) and full.test_max_length == 500


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"runs": (("count", "encoder"),)},
            r"ExperimentConfig\(runs=\('count', 'encoder'\)\): task must be one of",
        ),
        (
            {"runs": (("sort", "seq2seq"),)},
            r"ExperimentConfig\(runs=\('sort', 'seq2seq'\)\): mode must be one of",
        ),
        ({"schemes": ("sinusoidal", "xpos")}, r"ExperimentConfig\(schemes='xpos'\): scheme must be one of"),
        ({"seeds": ()}, r"ExperimentConfig\(seeds=\(\)\): a non-empty list of distinct seeds"),
        ({"batch_size": 15}, r"ExperimentConfig\(batch_size=15\): must be a positive even integer"),
        ({"max_steps": 25}, r"ExperimentConfig\(max_steps=25\): must be a multiple of check_every=10"),
        ({"test_max_length": 3}, r"ExperimentConfig\(test_max_length=3\): must be at least train_max_length"),
        ({"criterion": 1.5}, r"ExperimentConfig\(criterion=1.5\): must be in \(0, 1\]"),
    ],
)
def test_bad_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        _tiny(**overrides)


def test_bad_preset_and_device_split():
    with pytest.raises(ValueError, match=r"preset\(name='huge'\): unknown preset"):
        config_lib.preset("huge")
    with pytest.raises(ValueError, match=r"preset\(overrides=\['layers'\]\): unknown fields"):
        config_lib.preset("quick", layers=3)
    with pytest.raises(
        ValueError, match=r"setup_group\(batch_size=12\): the 6 rows .* divisible by the number of"
    ):
        train.setup_group(_tiny(batch_size=12), "sort", "encoder", "none", train.make_mesh())
    with pytest.raises(ValueError, match=r"scheme_spec\(name='xpos'\): unknown scheme"):
        config_lib.scheme_spec("xpos")
