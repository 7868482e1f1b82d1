"""Smoke tests of the ordering experiment: tiny configs trained for a few steps on 8 host devices.

Every scheme on one task, every task on one scheme, the decoder mode once; the outputs must exist and be
well-formed. Plus: the model without positions against its analytic ceiling, resuming after an
interruption, determinism, the same run on one device, and bad configurations.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ordering_tiny import tiny_config as _tiny

from experiments.ordering import __main__ as cli
from experiments.ordering import config as config_lib
from experiments.ordering import data, evaluate, stats, tasks, train
from experiments.ordering.model import ModelConfig


def _group(config: config_lib.ExperimentConfig, task: str, mode: str, scheme: str) -> config_lib.Group:
    return next(g for g in config.groups() if (g.task, g.mode, g.scheme) == (task, mode, scheme))


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
        assert record["steps"] == config.steps
        assert all(s is None or 0 < s <= config.steps for s in record["steps_to_criterion"])
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
        assert 0 <= row["low"] <= row["mean"] <= row["high"] <= 1
        assert isinstance(row["band_low"], int) and isinstance(row["band_high"], int)
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
        name: evaluate.evaluation_sets(config, tasks.get_task("sort"), "encoder", randomized, mesh)[1]
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
    config = _tiny(runs=(("reverse", "encoder"),), schemes=("none",), steps=200, test_per_length=8)
    setup = train.setup_group(config, _group(config, "reverse", "encoder", "none"), train.make_mesh())
    record = train.train_group(setup)
    ceiling = np.asarray(record["test"]["ceiling_per_example"])
    accuracy = np.asarray(record["test"]["token_accuracy_per_example"])
    assert accuracy.shape == (len(config.seeds), 8 * config.test_max_length)
    assert (accuracy <= ceiling + 1e-12).all()  # never above, for any example
    assert (ceiling - accuracy).mean() < 0.02  # and reached
    assert record["steps_to_criterion"] == [None, None]


def test_resume_after_an_interruption_gives_the_uninterrupted_results(tmp_path):
    config = _tiny(runs=(("reverse", "encoder"),), schemes=("none", "sinusoidal"), steps=10)
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
        cli.run(_tiny(runs=(("reverse", "encoder"),), schemes=("none",), steps=10), tmp_path / "a")


def test_one_device_gives_the_eight_device_results(every_task):
    config, workdir, _ = every_task
    single = train.make_mesh(jax.devices()[:1])
    setup = train.setup_group(config, _group(config, "majority", "encoder", "rotary"), single)
    assert len(setup.test.batch.tokens.sharding.device_set) == 1
    record = train.train_group(setup)
    eight = json.loads((workdir / "groups" / "majority-encoder-rotary.json").read_text())
    assert record["device_count"] == 1 and eight["device_count"] == 8
    np.testing.assert_allclose(record["curve"]["loss"], eight["curve"]["loss"], rtol=1e-3)
    np.testing.assert_allclose(record["test"]["token_accuracy"], eight["test"]["token_accuracy"], atol=0.1)


def test_evaluation_in_blocks_gives_the_same_metrics(every_task):
    config, workdir, _ = every_task
    setup = train.setup_group(config, _group(config, "reverse", "decoder", "rotary"), train.make_mesh())
    assert setup.test.block_rows == setup.test.batch.tokens.shape[0] == 16  # the whole set at once
    blocked = dataclasses.replace(setup, test=dataclasses.replace(setup.test, block_rows=8))
    record = train.train_group(blocked)
    whole = json.loads((workdir / "groups" / "reverse-decoder-rotary.json").read_text())
    assert record["test"] == whole["test"]


def test_evaluation_block_rows_bound_memory():
    long = config_lib.PRESETS["long"]
    # 8 heads, 5 seeds, rows of 1002 tokens: a few rows per block, a multiple of the device count.
    per_row = 5 * 8 * 1002**2
    assert (
        evaluate.evaluation_block_rows(long, rows=2000, row_length=1002, devices=8) == 2**30 // per_row // 8 * 8
    )
    assert evaluate.evaluation_block_rows(long, rows=2000, row_length=1002, devices=1) == 2**30 // per_row == 26
    assert (
        evaluate.evaluation_block_rows(config_lib.PRESETS["quick"], rows=320, row_length=82, devices=2) == 320
    )


def test_command_line_overrides():
    args = cli.parse_args(
        [
            "--task",
            "reverse",
            "sort",
            "--mode",
            "decoder",
            "--steps",
            "30",
            "--warmup-steps",
            "10",
            "--seeds",
            "4",
            "5",
        ]
    )
    config = cli.config_from_args(args)
    assert config.runs == (("reverse", "decoder"), ("sort", "decoder"))
    assert (config.steps, config.seeds) == (30, (4, 5))
    assert config.steps % config.check_every == 0
    kept = cli.config_from_args(cli.parse_args(["--task", "reverse", "--mode", "decoder"]))
    assert kept.steps_for("reverse", "decoder") == config_lib.PRESETS["quick"].steps_for("reverse", "decoder")
    quick = cli.config_from_args(cli.parse_args([]))
    assert quick == config_lib.PRESETS["quick"]
    assert len(quick.seeds) >= 5 and ("sort", "encoder") in quick.runs and ("majority", "encoder") in quick.runs
    assert any(mode == "decoder" for _, mode in quick.runs)
    assert {"none", "sinusoidal", "learned"} <= set(quick.schemes)
    assert any(config_lib.SCHEMES[s].randomized for s in quick.schemes)
    assert not set(quick.schemes) & set(config_lib.RELATIVE_SCHEMES)
    long = config_lib.PRESETS["long"]
    assert set(long.schemes) == set(config_lib.SCHEMES) - set(config_lib.LITERATURE_SCHEMES)
    assert set(config_lib.PRESETS["wide"].schemes) == set(config_lib.SCHEMES)
    assert len(long.seeds) >= 5 and long.model == ModelConfig(5, 64, 8, 4) and long.test_max_length == 500


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
        ({"schemes": ("sinusoidal", "spiral")}, r"ExperimentConfig\(schemes='spiral'\): scheme must be one of"),
        ({"seeds": ()}, r"ExperimentConfig\(seeds=\(\)\): a non-empty list of distinct seeds"),
        ({"batch_size": 15}, r"ExperimentConfig\(batch_size=15\): must be a positive even integer"),
        (
            {"steps": 25},
            r"ExperimentConfig\(steps=25\): the budget of sort \(encoder\) must be a multiple of check_every=10",
        ),
        (
            {"position_range": 10},
            r"ExperimentConfig\(position_range=10\): must be at least the longest test sequence \(16 tokens\)",
        ),
        ({"position_draw": "step"}, r"ExperimentConfig\(position_draw='step'\): must be one of"),
        (
            {"learning_rates": (float("inf"),)},
            r"ExperimentConfig\(learning_rates=inf\): each learning rate must be a positive finite",
        ),
        ({"test_max_length": 3}, r"ExperimentConfig\(test_max_length=3\): must be at least train_max_length"),
        ({"criterion": 1.5}, r"ExperimentConfig\(criterion=1.5\): must be in \(0, 1\]"),
        (
            {"position_draw": "batch"},
            r"ExperimentConfig\(position_draw='batch'\): a draw shared by a batch needs "
            r"length_sampling=\"one_per_batch\"",
        ),
        ({"length_sampling": "bucketed"}, r"ExperimentConfig\(length_sampling='bucketed'\): must be one of"),
        ({"position_layers": "every"}, r"ExperimentConfig\(position_layers='every'\): must be one of"),
        ({"scheme_parameters": "tied"}, r"ExperimentConfig\(scheme_parameters='tied'\): must be one of"),
        ({"loss_reduction": "sum"}, r"ExperimentConfig\(loss_reduction='sum'\): must be one of"),
        (
            {"learning_rate_schedule": "constant"},
            r"ExperimentConfig\(warmup_steps=5\): must be 0 with learning_rate_schedule=\"constant\"",
        ),
        (
            {
                "position_draw": "batch",
                "length_sampling": "one_per_batch",
                "test_per_length": 6,
                "evaluation_sub_batch": 4,
            },
            r"ExperimentConfig\(test_per_length=6\): must be a multiple of evaluation_sub_batch=4",
        ),
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
        config = _tiny(batch_size=12)
        train.setup_group(config, _group(config, "sort", "encoder", "none"), train.make_mesh())
    with pytest.raises(ValueError, match=r"scheme_spec\(name='spiral'\): unknown scheme"):
        config_lib.scheme_spec("spiral")


def test_learning_rate_schedule_is_warmup_then_cosine_decay_to_zero():
    peak, warmup, steps = 3e-3, 10, 110
    schedule = train.learning_rate_schedule(peak, warmup, steps)
    for s in range(0, steps + 1):
        if s < warmup:
            expected = peak * s / warmup
        else:
            expected = peak * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup)))
        assert float(schedule(s)) == pytest.approx(expected, rel=1e-5, abs=1e-9), s
    assert float(schedule(steps)) == 0.0


def test_budget_rule_every_scheme_and_seed_trains_the_same_steps(every_scheme):
    config, workdir, _ = every_scheme
    records = [json.loads(p.read_text()) for p in sorted((workdir / "groups").glob("*.json"))]
    assert len(records) == len(config.schemes)
    for r in records:
        # The same fixed budget for every scheme and seed; a check every check_every steps to the end.
        assert r["steps"] == config.steps_for("sort", "encoder") == config.steps
        assert r["curve"]["step"] == list(range(config.check_every, config.steps + 1, config.check_every))
        assert r["final_validation_exact_match"] == r["curve"]["validation_exact_match"][-1]
        # Steps to criterion: the first check at the criterion, else None ("not reached").
        for i, s in enumerate(r["steps_to_criterion"]):
            exact = [v[i] for v in r["curve"]["validation_exact_match"]]
            first = next(
                (step for step, v in zip(r["curve"]["step"], exact, strict=True) if v >= config.criterion), None
            )
            assert s == first


def test_training_does_not_stop_at_the_criterion():
    # Criterion 0: every seed "reaches" it at the first check, and training still runs the whole budget.
    config = _tiny(runs=(("reverse", "encoder"),), schemes=("none",), criterion=1e-9)
    record = train.train_group(
        train.setup_group(config, _group(config, "reverse", "encoder", "none"), train.make_mesh())
    )
    assert record["steps_to_criterion"] == [config.check_every] * len(config.seeds)
    assert record["curve"]["step"][-1] == config.steps
    losses = np.asarray(record["curve"]["loss"])
    assert (losses[-1] != losses[0]).all()


def test_per_run_budgets():
    config = _tiny(runs=(("sort", "encoder"), ("reverse", "decoder")), run_steps=(("reverse", "decoder", 40),))
    assert config.steps_for("sort", "encoder") == 20 and config.steps_for("reverse", "decoder") == 40
    groups = config.groups()
    a, b = (g for g in groups if g.mode == "encoder" and g.scheme in ("none", "sinusoidal"))
    assert config.group_fingerprint(a, 1) != config.group_fingerprint(b, 1)
    assert config.group_fingerprint(a, 1) == _tiny(
        runs=config.runs, run_steps=((("reverse", "decoder", 60)),)
    ).group_fingerprint(a, 1)
    with pytest.raises(
        ValueError, match=r"ExperimentConfig\(run_steps=\('count', 'encoder', 10\)\): each entry"
    ):
        _tiny(run_steps=(("count", "encoder", 10),))


def test_paper_preset_is_the_reference_codes_protocol():
    """The reference code (google-deepmind/randomized_positional_encodings) shows: post-LayerNorm, dropout
    0.1, bias-free attention projections, Haiku's initialisation, Adam at a constant learning rate with
    global-norm clip 1, batch 128 of one length uniform on 1-40, the loss summed over output tokens and
    averaged over the batch, randomized positions from [0, 2048) drawn per batch and attention layer and
    afresh for every evaluation sub-batch of 64, 512 test examples per length; the publications add the
    learning rates, seeds and budget."""
    paper = config_lib.PRESETS["paper"]
    assert paper.model == ModelConfig(
        5,
        64,
        8,
        4,
        dropout=0.1,
        norm="post",
        attention_bias=False,
        init="reference",
        layer_norm_epsilon=1e-5,
        embedding_dropout="when_added",
    )
    assert (paper.batch_size, paper.grad_clip, paper.train_max_length, paper.test_max_length) == (
        128,
        1.0,
        40,
        500,
    )
    assert (paper.learning_rate_schedule, paper.warmup_steps, paper.loss_reduction) == (
        "constant",
        0,
        "sequence_sum",
    )
    assert (paper.length_sampling, paper.rows_per_step) == ("one_per_batch", 128)
    assert (paper.position_range, paper.position_draw, paper.position_layers) == (2048, "batch", "per_layer")
    assert (paper.evaluation_sub_batch, paper.test_per_length, paper.scheme_parameters) == (
        64,
        512,
        "per_layer",
    )
    assert paper.position_draws(True) == 5 and paper.position_draws(False) == 1
    assert paper.learning_rates == (1e-4, 3e-4, 5e-4) and len(paper.seeds) == 10
    assert paper.steps == 1_000_000 and not paper.run_steps
    assert all(mode == "encoder" for _, mode in paper.runs)
    assert len(paper.groups()) == len(paper.runs) * len(paper.schemes) * 3
    assert stats.beyond_training(paper.train_max_length, paper.test_max_length) == (41, 500)
    assert "Not known" in config_lib.PRESET_NOTES["paper"]
    assert "not the papers' scale" in config_lib.PRESET_NOTES["long"]
    assert "full" not in config_lib.PRESETS
    # The reference refuses its randomized relative encoding with causal attention: no decoder group.
    long = config_lib.PRESETS["long"]
    assert not any(g.scheme == "randomized_relative" and g.mode == "decoder" for g in long.groups())
    assert any(g.scheme == "relative_at_random_positions" and g.mode == "decoder" for g in long.groups())
    # The departures are listed once and printed by the README; no preset note claims to "follow" it.
    readme = (Path(__file__).resolve().parents[2] / "experiments" / "README.md").read_text()
    block = readme.split("<!-- paper-departures -->\n")[1].split("\n<!-- /paper-departures -->")[0]
    assert block == config_lib.departures_markdown()
    assert any("dropout is off" in line for line in config_lib.PAPER_DEPARTURES)
    assert not any("follow" in note for note in config_lib.PRESET_NOTES.values())
    assert "best scheme of Ruoss" not in (Path(config_lib.__file__).parent / "schemes.py").read_text()


def test_the_quick_preset_is_unchanged_by_the_reference_options():
    """Every protocol option defaults to the quick preset's behaviour, and groups trained before the options
    existed keep their fingerprints (a resumed run stays valid)."""
    quick = config_lib.PRESETS["quick"]
    assert (quick.length_sampling, quick.position_draw, quick.position_layers) == (
        "paired",
        "example",
        "shared",
    )
    assert (quick.learning_rate_schedule, quick.loss_reduction, quick.model.norm) == (
        "warmup_cosine",
        "token_mean",
        "pre",
    )
    assert (quick.model.init, quick.model.attention_bias, quick.model.layer_norm_epsilon) == (
        "unit_normal",
        True,
        1e-6,
    )
    assert (quick.scheme_parameters, quick.model.embedding_dropout) == ("shared", "always")
    group = quick.groups()[0]
    assert quick.group_fingerprint(group, 1) == "8ebf4464924cff9a"


def test_loss_summed_over_output_tokens_and_averaged_over_the_batch():
    rng = np.random.default_rng(0)
    batch = data.training_batch(
        tasks.get_task("sort"), rng, mode="encoder", rows=3, max_length=4, one_length=True
    )
    logits = rng.standard_normal(batch.tokens.shape + (tasks.NUM_CLASSES,))
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_softmax, batch.targets[..., None], -1)[..., 0] * batch.weights
    summed, _ = train.loss_and_accuracy(jnp.asarray(logits), batch, "sequence_sum", 3)
    mean, _ = train.loss_and_accuracy(jnp.asarray(logits), batch)
    np.testing.assert_allclose(summed, ce.sum() / 3, rtol=1e-5)
    np.testing.assert_allclose(mean, ce.sum() / batch.weights.sum(), rtol=1e-5)
    assert train.learning_rate_schedule(3e-4, 0, 100, "constant") == 3e-4


def test_reference_protocol_trains_and_evaluates():
    """One group with every reference option on: the randomized relative map drawn per layer and batch,
    one length per batch, post-LayerNorm, Haiku's initialisation, constant learning rate, summed loss."""
    model = dataclasses.replace(
        _tiny().model,
        num_layers=2,
        norm="post",
        attention_bias=False,
        init="reference",
        layer_norm_epsilon=1e-5,
        dropout=0.1,
        embedding_dropout="when_added",
    )
    config = _tiny(
        runs=(("sort", "encoder"),),
        schemes=("randomized_relative",),
        model=model,
        position_draw="batch",
        length_sampling="one_per_batch",
        position_layers="per_layer",
        scheme_parameters="per_layer",
        evaluation_sub_batch=2,
        learning_rate_schedule="constant",
        warmup_steps=0,
        loss_reduction="sequence_sum",
    )
    setup = train.setup_group(config, config.groups()[0], train.make_mesh())
    assert setup.test.batch.positions.shape[-1] == 2 and setup.rows == config.batch_size
    # Every attention layer has its own W_R, u and v, as in the reference.
    initial = train.init_parameters(setup, [0])[0]["params"]
    assert {"scheme_0", "scheme_1"} <= set(initial) and "scheme" not in initial
    assert not np.array_equal(initial["scheme_0"]["kernel"], initial["scheme_1"]["kernel"])
    # Dropout on the embeddings only where the scheme adds a vector to them.
    assert not setup.model.drop_embeddings
    learned = dataclasses.replace(config, schemes=("learned",))
    assert train.setup_group(learned, learned.groups()[0], train.make_mesh(), test=False).model.drop_embeddings
    assert (np.asarray(setup.test.batch.positions)[:, 0] == 0).all()  # the map starts at 0 in every row
    record = train.train_group(setup)
    losses = np.asarray(record["curve"]["loss"])
    assert np.isfinite(losses).all() and losses.shape == (2, len(config.seeds))
    accuracy = np.asarray(record["test"]["token_accuracy"])
    assert accuracy.shape == (len(config.seeds), config.test_max_length) and np.isfinite(accuracy).all()


def test_answer_position_ablation_and_untrained_table_rows(every_scheme):
    """The absolute schemes are evaluated again with only the output tokens moved into the training range,
    and the learned table's rows beyond the training sequences are exactly at their initial values; the
    report states both, generated."""
    config, workdir, _ = every_scheme
    records = {p.stem: json.loads(p.read_text()) for p in (workdir / "groups").glob("*.json")}
    for scheme in config.schemes:
        test = records[f"sort-encoder-{scheme}"]["test"]
        assert ("answer_position_ablation" in test) == config_lib.SCHEMES[scheme].absolute
        assert ("table_rows" in test) == (scheme == "learned")
    ablation = records["sort-encoder-sinusoidal"]["test"]["answer_position_ablation"]
    original = np.asarray(records["sort-encoder-sinusoidal"]["test"]["token_accuracy"])
    moved = np.asarray(ablation["token_accuracy"])
    n = config.train_max_length
    np.testing.assert_array_equal(moved[:, :n], original[:, :n])  # nothing moves within the training lengths
    rows = records["sort-encoder-learned"]["test"]["table_rows"]
    assert rows["trained_rows"] == 2 * n and rows["rows"] == 2 * config.test_max_length
    assert rows["max_abs_change_unseen"] == [0.0] * len(config.seeds)
    assert min(rows["max_abs_change_seen"]) > 0
    report = (workdir / "report.md").read_text()
    assert "## Explanations (generated from the run)" in report
    assert "the unseen output positions account for" in report or "no drop from the in-distribution" in report
    assert (
        f"rows {2 * n}-{2 * config.test_max_length - 1}" in report
        and "exactly at their initial values" in report
    )


def test_explanations_of_the_decoder_and_of_schemes_that_track_another():
    from experiments.ordering import explain

    config = _tiny(runs=(("reverse", "decoder"),), schemes=("none", "sinusoidal", "randomized_rotary"))
    steps = [10, 20, 30, 40]

    def record(scheme, curve, accuracy):
        lengths = config.test_max_length
        return {
            "task": "reverse",
            "mode": "decoder",
            "scheme": scheme,
            "learning_rate": config.learning_rates[0],
            "steps": 40,
            "final_validation_exact_match": [curve[-1] - 0.01, curve[-1] + 0.01],
            "curve": {"step": steps, "validation_exact_match": [[c - 0.01, c + 0.01] for c in curve]},
            "test": {
                "token_accuracy": [[accuracy - 0.01] * lengths, [accuracy + 0.01] * lengths],
                "teacher_forced_token_accuracy": [[0.97] * lengths] * 2,
                "most_frequent": [0.55] * lengths,
            },
        }

    records = [
        record("none", [0.3, 0.6, 0.7, 0.78], 0.91),
        record("sinusoidal", [0.5, 0.9, 1.0, 1.0], 0.99),
        record("randomized_rotary", [0.32, 0.63, 0.74, 0.81], 0.93),
    ]
    lines = explain.explanations(config, records)
    text = "\n".join(lines)
    assert "**reverse (decoder)** without any positions: in-distribution exact match 0.78" in text
    assert "0.91 greedy and 0.97 teacher-forced" in text and "Kazemnejad" in text
    assert "sinusoidal +0.08 in every seed" in text and "randomized_rotary +0.02 in every seed" in text
    tracked = next(line for line in lines if line.startswith("- **randomized_rotary**"))
    assert "did not reach the criterion (0.99) within the budget of 40 steps" in tracked
    assert "tracks **none**" in tracked and "0.81 vs 0.78 at step 40" in tracked and "still rising" in tracked
    assert not any(line.startswith("- **sinusoidal**") for line in lines)


@pytest.mark.parametrize("directory, preset", [("ordering", "quick"), ("ordering_wide", "wide")])
def test_committed_results_follow_the_protocol(directory, preset):
    """The committed results come from their preset as defined now: equal budgets within every run, at
    least 5 seeds, and a report whose findings (and, for the wide preset, the ranking and the literature's
    checks) are exactly those generated from the committed paired intervals (which are recomputed here from
    the per-seed values)."""
    from experiments.ordering import report, summary

    results = Path(__file__).resolve().parents[2] / "experiments" / "results" / directory
    config = config_lib.ExperimentConfig.from_json(json.loads((results / "config.json").read_text()))
    assert config == config_lib.PRESETS[preset]
    committed = json.loads((results / "summary.json").read_text())
    groups = committed["groups"]
    assert len(groups) == len(config.groups())
    for task, mode in config.runs:
        budgets = {g["steps"] for g in groups if (g["task"], g["mode"]) == (task, mode)}
        assert budgets == {config.steps_for(task, mode)}
    assert all(len(g["seeds"]) >= 5 for g in groups)
    recomputed = summary.compare_schemes(committed["rows"])
    # Equal up to the last bits that another numpy or scipy version computes differently (t quantiles).
    assert len(recomputed) == len(committed["comparisons"])
    for new, old in zip(recomputed, committed["comparisons"], strict=True):
        assert new.keys() == old.keys()
        for key, value in new.items():
            if isinstance(value, float) and not isinstance(value, bool):
                assert value == pytest.approx(old[key], rel=1e-9, abs=1e-12), (key, new, old)
            else:
                assert value == old[key], (key, new, old)
    text = (results / "report.md").read_text()
    for line in report.findings(config, groups, committed["comparisons"]):
        assert line in text
    assert ("## Every scheme ranked" in text) == (preset != "quick")
    if preset != "quick":
        wider = report.ranking_section(config, committed["rows"]) + report.literature_section(
            config, committed["rows"]
        )
        for line in wider:
            assert line in text


def test_the_readme_summarises_the_committed_wide_run():
    """The README's table of every scheme and its tally of the papers' orderings are the committed wide
    run's numbers."""
    from experiments.ordering import literature, report

    root = Path(__file__).resolve().parents[2]
    results = root / "experiments" / "results" / "ordering_wide"
    config = config_lib.ExperimentConfig.from_json(json.loads((results / "config.json").read_text()))
    rows = json.loads((results / "summary.json").read_text())["rows"]
    index = {(r["task"], r["mode"], r["band"], r["scheme"]): r for r in rows if r["metric"] == "token_accuracy"}
    columns = [
        ("sort", "encoder", "1-2x (11-20)"),
        ("sort", "encoder", "2-4x (21-40)"),
        ("majority", "encoder", "2-4x (21-40)"),
        ("reverse", "decoder", "1-2x (11-20)"),
    ]
    table = "\n".join(
        "| " + " | ".join([s] + [report._interval(index.get((t, m, b, s))) for t, m, b in columns]) + " |"
        for s in config.schemes
    )
    readme = " ".join((root / "README.md").read_text().split("\n\n"))
    assert table in readme
    assert f"all {len(config.schemes)} schemes" in readme and f"{len(config.groups())} groups" in readme
    verdicts = [v for c in literature.check_claims(config, rows)["checks"] for _, _, v in c["bands"]]
    disagree = verdicts.count("disagrees")
    tally = (
        f"Of the {len(verdicts)} checks of the papers' orderings, {verdicts.count('agrees')} agree, "
        f"{f'{disagree} disagree' if disagree else 'none disagrees'}, "
        f"{verdicts.count('cannot separate')} cannot separate the schemes and {verdicts.count('at baseline')} "
        "compare two schemes at the baseline level"
    )
    assert tally in " ".join(readme.split())
    # The experiments README copies the literature's checks and the sort ranking from the run.
    experiments_readme = (root / "experiments" / "README.md").read_text()
    ranking = report.ranking_section(config, rows)
    sort_table = ranking[ranking.index("### sort (encoder)") + 2 : ranking.index("### majority (encoder)")]
    for line in report.literature_section(config, rows)[2:] + sort_table:
        assert line in experiments_readme
