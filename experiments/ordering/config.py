"""Configuration of the ordering experiment: the frozen config saved with the results, and the presets.

The compared schemes are defined in :mod:`experiments.ordering.schemes` (re-exported here)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, NamedTuple

from experiments.ordering import tasks
from experiments.ordering.model import ModelConfig
from experiments.ordering.schemes import LITERATURE_SCHEMES, RELATIVE_SCHEMES, SCHEMES, SchemeSpec, scheme_spec

__all__ = [
    "LITERATURE_SCHEMES",
    "SCHEMES",
    "RELATIVE_SCHEMES",
    "SchemeSpec",
    "scheme_spec",
    "ExperimentConfig",
    "PRESETS",
    "PRESET_NOTES",
    "PAPER_DEPARTURES",
    "departures_markdown",
    "protocol_phrases",
    "preset",
    "Group",
    "longest_test_sequence",
    "check_positions",
]


def longest_test_sequence(task: tasks.Task, test_max_length: int) -> int:
    """Tokens of the longest test example (input plus output)."""
    return int(task.sequence_length(test_max_length))


class Group(NamedTuple):
    """One trained group: every seed of a (task, mode, scheme, learning rate), trained together.

    Attributes:
      task, mode, scheme: what is trained.
      learning_rate: Adam's peak learning rate.
      name: file name stem (the learning rate appears only when a config has several).
    """

    task: str
    mode: str
    scheme: str
    learning_rate: float
    name: str


def check_positions(positions, max_positions: int, where: str) -> None:
    """Raises if any position lies outside ``[0, max_positions)`` (the learned table's rows).

    Raises:
      ValueError: naming ``where`` and the offending range.
    """
    low, high = int(positions.min(initial=0)), int(positions.max(initial=0))
    if low < 0 or high >= max_positions:
        raise ValueError(
            f"check_positions({where}): positions span {low} … {high}, outside [0, {max_positions}) of the "
            "learned table"
        )


POSITION_DRAWS = ("example", "batch")
LENGTH_SAMPLINGS = ("paired", "one_per_batch")
POSITION_LAYERS = ("shared", "per_layer")
SCHEME_PARAMETERS = ("shared", "per_layer")
LEARNING_RATE_SCHEDULES = ("warmup_cosine", "constant")
LOSS_REDUCTIONS = ("token_mean", "sequence_sum")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything that determines the results of a run (saved as ``config.json``).

    Attributes:
      preset: name of the preset the config started from.
      runs: ``(task, mode)`` pairs; each is trained with every scheme.
      schemes: scheme names (keys of `SCHEMES`).
      seeds: training seeds; the seeds of one group train together under ``jax.vmap``.
      model: the Transformer size.
      train_max_length: ``N``: training input lengths are uniform on ``1 … N``.
      test_max_length: evaluation covers every input length ``1 … test_max_length``.
      batch_size: examples per training step and seed (even: with ``length_sampling="paired"`` rows hold two
        examples).
      learning_rates: Adam's peak learning rates; each is a group of its own.
      warmup_steps: steps of linear warm-up from 0 to the peak; then cosine decay to 0 at the last step
        (``learning_rate_schedule="warmup_cosine"``; must be 0 for ``"constant"``).
      steps: the training budget: every scheme and seed of a run trains exactly this many steps (unless
        ``run_steps`` names the run), and the final model is the one evaluated.
      run_steps: ``(task, mode, steps)`` budgets that replace ``steps`` for those runs.
      check_every: steps between two checks of the in-distribution validation exact match (recorded; the
        first check at ``criterion`` gives the steps-to-criterion column; nothing is selected by it).
      criterion: in-distribution exact-match accuracy counted as "reached".
      validation_per_length: examples per length ``1 … N`` of the fixed validation set.
      test_per_length: examples per length of the fixed test set.
      data_seed: seed of the fixed validation and test sets (shared by every scheme and seed: a paired
        comparison).
      grad_clip: global gradient-norm clip.
      position_range: randomized schemes draw positions from ``[0, position_range)``; must hold the longest
        test sequence (the reference uses 2048).
      position_draw: ``"example"`` (a draw per example) or ``"batch"`` (the reference's: one draw of exactly
        the sequence's length per training step and seed, and a fresh one for every ``evaluation_sub_batch``
        examples of one length at evaluation; needs ``length_sampling="one_per_batch"``).
      length_sampling: ``"paired"`` (two examples of lengths ``n`` and ``N + 1 - n`` per row, no padding) or
        ``"one_per_batch"`` (the reference's: one length ``n`` per training step, one example per row, padded;
        evaluation sets then have one example per row too).
      position_layers: ``"shared"`` (one draw of randomized positions serves every layer) or ``"per_layer"``
        (the reference's: every attention layer draws its own rotary or relative positions; additive
        schemes read the first draw).
      scheme_parameters: ``"shared"`` (one set of a relative-attention scheme's parameters for all layers)
        or ``"per_layer"`` (the reference's: every attention layer has its own W_R, u and v; a learned table,
        read once at the embedding, stays one).
      evaluation_sub_batch: with ``position_draw="batch"``, the examples of one length sharing a draw at
        evaluation (the reference evaluates 512 examples per length in sub-batches of 64).
      learning_rate_schedule: ``"warmup_cosine"`` or ``"constant"`` (the reference's: Adam at a constant
        learning rate).
      loss_reduction: ``"token_mean"`` (cross-entropy averaged over every output token of the batch) or
        ``"sequence_sum"`` (the reference's: summed over each example's output tokens, averaged over the
        examples).
    """

    preset: str = "quick"
    runs: tuple[tuple[str, str], ...] = (("sort", "encoder"), ("majority", "encoder"), ("reverse", "decoder"))
    schemes: tuple[str, ...] = ("none", "sinusoidal", "learned", "rotary", "randomized_rotary")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    model: ModelConfig = ModelConfig(num_layers=2, width=64, num_heads=4, mlp_ratio=4)
    train_max_length: int = 10
    test_max_length: int = 40
    batch_size: int = 32
    learning_rates: tuple[float, ...] = (1e-3,)
    warmup_steps: int = 100
    steps: int = 2000
    run_steps: tuple[tuple[str, str, int], ...] = (("majority", "encoder", 600), ("reverse", "decoder", 2000))
    check_every: int = 50
    criterion: float = 0.99
    validation_per_length: int = 32
    test_per_length: int = 16
    data_seed: int = 1234
    grad_clip: float = 1.0
    position_range: int = 2048
    position_draw: str = "example"
    length_sampling: str = "paired"
    position_layers: str = "shared"
    scheme_parameters: str = "shared"
    evaluation_sub_batch: int = 64
    learning_rate_schedule: str = "warmup_cosine"
    loss_reduction: str = "token_mean"

    def __post_init__(self):
        def fail(field, value, allowed):
            raise ValueError(f"ExperimentConfig({field}={value!r}): {allowed}")

        def positive_int(field, value):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(field, value, "must be a positive integer")

        if not self.runs:
            fail("runs", self.runs, "at least one (task, mode) pair is needed")
        for run in self.runs:
            if not (isinstance(run, tuple) and len(run) == 2):
                fail("runs", self.runs, "each run must be a (task, mode) pair")
            if run[0] not in tasks.TASKS:
                fail("runs", run, f"task must be one of {sorted(tasks.TASKS)}")
            if run[1] not in tasks.MODES:
                fail("runs", run, f"mode must be one of {tasks.MODES}")
        if len(set(self.runs)) != len(self.runs):
            fail("runs", self.runs, "runs must be distinct")
        if not self.schemes or len(set(self.schemes)) != len(self.schemes):
            fail("schemes", self.schemes, "a non-empty list of distinct scheme names is needed")
        for name in self.schemes:
            if name not in SCHEMES:
                fail("schemes", name, f"scheme must be one of {list(SCHEMES)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            fail("seeds", self.seeds, "a non-empty list of distinct seeds is needed")
        if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            fail("seeds", self.seeds, "seeds must be non-negative integers")
        for name in (
            "train_max_length",
            "test_max_length",
            "steps",
            "check_every",
            "position_range",
            "evaluation_sub_batch",
        ):
            positive_int(name, getattr(self, name))
        for run in self.run_steps:
            if not (isinstance(run, tuple) and len(run) == 3 and run[:2] in self.runs):
                fail("run_steps", run, f"each entry must be (task, mode, steps) of one of the runs {self.runs}")
            positive_int("run_steps", run[2])
        for task, mode in self.runs:
            if self.steps_for(task, mode) % self.check_every:
                fail(
                    "steps",
                    self.steps_for(task, mode),
                    f"the budget of {task} ({mode}) must be a multiple of check_every={self.check_every}",
                )
        if self.test_max_length < self.train_max_length:
            fail("test_max_length", self.test_max_length, "must be at least train_max_length")
        if not isinstance(self.batch_size, int) or self.batch_size < 2 or self.batch_size % 2:
            fail("batch_size", self.batch_size, "must be a positive even integer (two examples per row)")
        for name in ("validation_per_length", "test_per_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2 or value % 2:
                fail(name, value, "must be a positive even integer")
        if not 0.0 < self.criterion <= 1.0:
            fail("criterion", self.criterion, "must be in (0, 1]")
        if not self.learning_rates or len(set(self.learning_rates)) != len(self.learning_rates):
            fail("learning_rates", self.learning_rates, "a non-empty list of distinct learning rates is needed")
        for lr in self.learning_rates:
            if not (isinstance(lr, float | int) and 0.0 < lr < float("inf")):
                fail("learning_rates", lr, "each learning rate must be a positive finite number")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            fail("warmup_steps", self.warmup_steps, "must be a non-negative integer")
        for task, mode in self.runs:
            if (
                self.learning_rate_schedule == "warmup_cosine"
                and self.steps_for(task, mode) <= self.warmup_steps
            ):
                fail(
                    "warmup_steps",
                    self.warmup_steps,
                    f"must be less than the budget of {task} ({mode}), {self.steps_for(task, mode)} steps",
                )
        if not 0.0 < self.grad_clip < float("inf"):
            fail("grad_clip", self.grad_clip, "must be a positive finite number")
        for name, allowed in (
            ("position_draw", POSITION_DRAWS),
            ("length_sampling", LENGTH_SAMPLINGS),
            ("position_layers", POSITION_LAYERS),
            ("scheme_parameters", SCHEME_PARAMETERS),
            ("learning_rate_schedule", LEARNING_RATE_SCHEDULES),
            ("loss_reduction", LOSS_REDUCTIONS),
        ):
            if getattr(self, name) not in allowed:
                fail(name, getattr(self, name), f"must be one of {allowed}")
        if self.position_draw == "batch" and self.length_sampling != "one_per_batch":
            fail(
                "position_draw",
                self.position_draw,
                'a draw shared by a batch needs length_sampling="one_per_batch" (examples of one length)',
            )
        if self.position_draw == "batch":
            for name in ("validation_per_length", "test_per_length"):
                value = getattr(self, name)
                if value % min(value, self.evaluation_sub_batch):
                    fail(
                        name,
                        value,
                        f"must be a multiple of evaluation_sub_batch={self.evaluation_sub_batch} when larger "
                        '(position_draw="batch" draws once per sub-batch of one length)',
                    )
        if self.learning_rate_schedule == "constant" and self.warmup_steps:
            fail("warmup_steps", self.warmup_steps, 'must be 0 with learning_rate_schedule="constant"')
        longest = max(longest_test_sequence(tasks.get_task(t), self.test_max_length) for t, _ in self.runs)
        if self.position_range < longest:
            fail(
                "position_range",
                self.position_range,
                f"must be at least the longest test sequence ({longest} tokens)",
            )

    @property
    def rows_per_step(self) -> int:
        """Rows of a training batch: two examples per row (``"paired"``) or one (``"one_per_batch"``)."""
        return self.batch_size // 2 if self.length_sampling == "paired" else self.batch_size

    def position_draws(self, randomized: bool) -> int:
        """Independent draws of randomized positions per example: one per attention layer with
        ``position_layers="per_layer"``, else one (also for schemes that are not randomized)."""
        return self.model.num_layers if randomized and self.position_layers == "per_layer" else 1

    def steps_for(self, task: str, mode: str) -> int:
        """The training budget (steps) of every scheme and seed of the run ``(task, mode)``."""
        return next((s for t, m, s in self.run_steps if (t, m) == (task, mode)), self.steps)

    def table_rows(self, task: str, randomized: bool) -> int:
        """Rows of a learned table: the randomized range, or the longest test sequence of ``task``."""
        return (
            self.position_range
            if randomized
            else longest_test_sequence(tasks.get_task(task), self.test_max_length)
        )

    def groups(self) -> list[Group]:
        """Every group of the run, in training order."""
        several = len(self.learning_rates) > 1
        return [
            Group(t, m, s, lr, f"{t}-{m}-{s}" + (f"-lr{lr:g}" if several else ""))
            for t, m in self.runs
            for s in self.schemes
            if m in SCHEMES[s].modes
            for lr in self.learning_rates
        ]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Inverse of `to_json`."""
        data = dict(data)
        data["model"] = ModelConfig(**data["model"])
        for name in ("runs", "run_steps"):
            data[name] = tuple(tuple(run) for run in data[name])
        for name in ("schemes", "seeds", "learning_rates"):
            data[name] = tuple(data[name])
        return cls(**data)

    def group_fingerprint(self, group: Group, device_count: int) -> str:
        """A hash of everything that determines one group's results (to refuse stale resumed groups)."""
        data = self.to_json()
        for name in ("preset", "runs", "schemes", "learning_rates", "run_steps", "steps"):
            data.pop(name)
        # Protocol options at their defaults are left out, so groups trained before the options existed
        # keep their fingerprints.
        for name, default in _OPTION_DEFAULTS.items():
            if data.get(name) == default:
                data.pop(name)
        for name, default in _MODEL_OPTION_DEFAULTS.items():
            if data["model"].get(name) == default:
                data["model"].pop(name)
        data["group"] = [group.task, group.mode, group.scheme, group.learning_rate, device_count]
        data["budget"] = self.steps_for(group.task, group.mode)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


_OPTION_DEFAULTS = {
    "length_sampling": "paired",
    "position_layers": "shared",
    "scheme_parameters": "shared",
    "evaluation_sub_batch": 64,
    "learning_rate_schedule": "warmup_cosine",
    "loss_reduction": "token_mean",
}
_MODEL_OPTION_DEFAULTS = {
    "norm": "pre",
    "attention_bias": True,
    "init": "unit_normal",
    "layer_norm_epsilon": 1e-6,
    "embedding_dropout": "always",
}

_LONG_MODEL = ModelConfig(num_layers=5, width=64, num_heads=8, mlp_ratio=4)
_ENCODER_TASKS = ("sort", "reverse", "duplicate", "odds_first", "majority")

_LONG = ExperimentConfig(
    preset="long",
    runs=tuple((task, "encoder") for task in _ENCODER_TASKS)
    + (("sort", "decoder"), ("reverse", "decoder"), ("odds_first", "decoder")),
    schemes=tuple(name for name in SCHEMES if name not in LITERATURE_SCHEMES),
    seeds=(0, 1, 2, 3, 4),
    model=_LONG_MODEL,
    train_max_length=40,
    test_max_length=500,
    batch_size=128,
    warmup_steps=500,
    steps=20_000,
    run_steps=(),
    check_every=500,
    validation_per_length=8,
    test_per_length=8,
)

PRESETS: dict[str, ExperimentConfig] = {
    "quick": ExperimentConfig(),
    # Every scheme of the registry on the quick preset's tasks, lengths, model, budget and seeds.
    "wide": ExperimentConfig(preset="wide", schemes=tuple(SCHEMES)),
    "long": _LONG,
    # The reference code's protocol (google-deepmind/randomized_positional_encodings) at the published scale:
    # the long preset's model size, lengths, batch and checks, in the encoder only, with the reference's
    # model (post-LayerNorm, dropout 0.1, bias-free attention projections, Haiku's initialisation), its
    # training (one length per batch, constant Adam learning rate, loss summed over output tokens and
    # averaged over the batch), its randomized positions (exactly the sequence's length, one draw per batch
    # and attention layer, fresh per evaluation sub-batch of 64) and 512 test examples per length; the
    # publications' learning rates, seeds and budget. Departures: `PAPER_DEPARTURES`.
    "paper": dataclasses.replace(
        _LONG,
        preset="paper",
        runs=tuple((task, "encoder") for task in _ENCODER_TASKS),
        seeds=tuple(range(10)),
        model=dataclasses.replace(
            _LONG_MODEL,
            dropout=0.1,
            norm="post",
            attention_bias=False,
            init="reference",
            layer_norm_epsilon=1e-5,
            embedding_dropout="when_added",
        ),
        learning_rates=(1e-4, 3e-4, 5e-4),
        learning_rate_schedule="constant",
        warmup_steps=0,
        steps=1_000_000,
        position_range=2048,
        position_draw="batch",
        length_sampling="one_per_batch",
        position_layers="per_layer",
        scheme_parameters="per_layer",
        evaluation_sub_batch=64,
        test_per_length=512,
        loss_reduction="sequence_sum",
    ),
}

#: Every deliberate departure of the ``paper`` preset from the reference code (one place: the report and the
#: README print this list). Everything else the code shows, the preset does.
PAPER_DEPARTURES: tuple[str, ...] = (
    "Evaluation is deterministic: dropout is off. The reference applies `hk.dropout` whenever the model is "
    "applied, in its range evaluation too.",
    "The reported score averages the test lengths N+1 … 500 (41-500). The reference's example script "
    "averages `accuracies[N + 1:]`, whose first entry is length N+2 (42).",
    "Inputs are token ids through an embedding table shared by the tasks (8 ids) and every task has 5 output "
    "classes; the reference one-hot encodes each task's own alphabet plus the empty token through a "
    "bias-free linear layer (the same function) and has as many output classes as the task's alphabet (2 "
    "for the binary tasks).",
    "Randomized relative encoding: every mapped offset sign(d)·r_|d| gets its own sinusoid, as the "
    "reference's docstring and comments describe. Its published code builds the sinusoid table without the "
    "negative half and indexes it at the offset plus noise_max_length, so JAX clamps the indices of every "
    "offset ≥ 0 to the table's last row (position noise_max_length - 1).",
    "Relative offsets of the `relative` scheme are query minus key (the library's Transformer-XL); the "
    "reference's are key minus query: the sine half of W_R changes sign, the same model under its "
    "symmetric initialisation.",
    "ALiBi in the encoder is the library's symmetric bias; the reference adds 0.5 × slope below the diagonal "
    "to tell left from right.",
    "A validation check (in-distribution exact match, 8 examples per length) is recorded every 500 steps; "
    "the reference logs only the training loss. Nothing is selected by it.",
    "Data, positions and dropout masks come from numpy and JAX generators seeded per seed and step (the "
    "same distributions as the reference's, other random streams); one fixed test set, with its positions, "
    "serves every scheme, seed and learning rate (a paired comparison).",
    "Only the tasks defined here run (sort, reverse, duplicate, odds_first, majority) and randomized ALiBi is "
    "not among the schemes.",
)


def protocol_phrases(config: ExperimentConfig) -> dict[str, str]:
    """How ``config``'s model, randomized draws and training read in a report (``"model"``, ``"draw"``,
    ``"batch"``, ``"schedule"``, ``"loss"``, ``"table_init"``)."""
    m = config.model
    model = (
        f"{m.norm}-LayerNorm Transformer, {m.num_layers} layers, width {m.width}, {m.num_heads} heads, MLP "
        f"{m.mlp_ratio}x with ReLU, dropout {m.dropout:g} (training only), attention projections "
        + ("with" if m.attention_bias else "without")
        + " biases. "
        + (
            "Token embeddings TruncatedNormal(0.02) multiplied by √width, dense layers Haiku's initialisation."
            if m.init == "reference"
            else "Token embeddings N(0, 1)."
        )
    )
    layers = "per attention layer" if config.position_layers == "per_layer" else "shared by every layer"
    draw = {
        "example": f"drawn independently per example ({layers})",
        "batch": f"exactly as many as the sequence has tokens, drawn once per training step (shared by the "
        f"batch of one length) and afresh for every {config.evaluation_sub_batch} evaluation examples of one "
        f"length ({layers})",
    }[config.position_draw]
    n = config.train_max_length
    batch = {
        "paired": f"batch {config.batch_size} examples per seed (packed two per row, lengths n and {n + 1}-n, "
        "no padding)",
        "one_per_batch": f"batch {config.batch_size} examples per seed, all of one length per step (one per "
        "row, padded)",
    }[config.length_sampling]
    lr_text = ", ".join(f"{lr:g}" for lr in config.learning_rates)
    schedule = {
        "warmup_cosine": f"peak learning rate {lr_text}, linear warm-up over {config.warmup_steps} steps then "
        "cosine decay to 0",
        "constant": f"constant learning rate {lr_text}",
    }[config.learning_rate_schedule]
    loss = {
        "token_mean": "cross-entropy averaged over the output tokens of the batch",
        "sequence_sum": "cross-entropy summed over each example's output tokens, averaged over the batch",
    }[config.loss_reduction]
    table_init = "TruncatedNormal(1) (Haiku's hk.Embed default)" if m.init == "reference" else "N(0, 1)"
    return {
        "model": model,
        "draw": draw,
        "batch": batch,
        "schedule": schedule,
        "loss": loss,
        "table_init": table_init,
    }


def departures_markdown() -> str:
    """`PAPER_DEPARTURES` as a Markdown list (the report's and the README's)."""
    return "\n".join(f"- {line}" for line in PAPER_DEPARTURES)


#: What each preset is, for reports and the command line's help.
PRESET_NOTES: dict[str, str] = {
    "quick": "the README's main command, for 2 CPU cores: a 2-layer model (width 64) on short lengths "
    "(training 1-10, test 1-40), 5 seeds, the schemes none, sinusoidal, learned, rotary and randomized rotary, "
    "on sort and the order-free control (majority) in the encoder and reverse (binary) in the causal decoder. "
    "Not the reference's protocol (pre-LayerNorm, warm-up and cosine decay, packed rows, randomized positions "
    "drawn per example). The long presets add ALiBi, randomized sinusoidal and learned positions, the other "
    "tasks (duplicate, odds_first; sort and odds_first in the decoder), the published model size and lengths, "
    "and (paper) the reference code's protocol at the published budget, learning rates, dropout and seeds.",
    "wide": "the quick preset's runs, model, lengths, budgets and 5 seeds with every scheme of the registry: "
    "the quick ones, ALiBi, randomized sinusoidal and learned positions, T5, Transformer-XL and its two "
    "randomized variants, and the length-generalization literature's Kerple (log), FIRE, CoPE, xPos and rotary "
    "with no encoding every 2nd layer; for 2 CPU cores (estimate it first with --estimate).",
    "long": "the published model size and lengths (encoder: 5 layers x width 64 x 8 heads, batch 128, training "
    "lengths 1-40, test 1-500) with 20,000 steps, one learning rate, 5 seeds and no dropout: far below the "
    "published training budget, so not the papers' scale; every task in the encoder, sort, reverse and "
    "odds_first in the decoder; for an accelerator (the batch is sharded over every device).",
    "paper": "the reference code's protocol (google-deepmind/randomized_positional_encodings) at the "
    "published scale: encoder, 5 layers x width 64 x 8 heads, post-LayerNorm, dropout 0.1 (on the "
    "embeddings only where the scheme adds to them), bias-free "
    "attention projections, Haiku's initialisation (token embeddings TruncatedNormal(0.02) x sqrt(64)), "
    "relative-attention parameters per layer, batch 128 of one length uniform on 1-40, Adam at a constant "
    "learning rate with global-norm clip 1, loss summed "
    "over output tokens and averaged over the batch, randomized positions from [0, 2048) of exactly the "
    "sequence's length drawn per batch and attention layer, test lengths 1-500 with 512 examples each in "
    "sub-batches of 64 with fresh positions; learning rates {1e-4, 3e-4, 5e-4} x 10 seeds, 1,000,000 steps "
    "(the publications' scale); reported as the maximum over seeds and learning rates of the per-token "
    "accuracy averaged over test lengths 41-500, beside mean and 95% interval. Its deliberate departures from "
    "the reference code are listed in the report. Not known from the code or the publications: which "
    "`randomize_both_sides` setting the published randomized relative numbers used (the code's default, "
    "False, here). For accelerators: estimate its cost before starting.",
}


def preset(name: str, **overrides: Any) -> ExperimentConfig:
    """The preset called ``name`` with fields replaced by ``overrides`` (overriding ``runs`` keeps the
    preset's per-run budgets of the runs that remain).

    Raises:
      ValueError: for an unknown preset or field.
    """
    if name not in PRESETS:
        raise ValueError(f"preset(name={name!r}): unknown preset; choose one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"preset(overrides={sorted(unknown)}): unknown fields; allowed: {sorted(fields)}")
    base = PRESETS[name]
    if "runs" in overrides and "run_steps" not in overrides:  # keep the budgets of the runs kept
        overrides["run_steps"] = tuple(r for r in base.run_steps if r[:2] in tuple(overrides["runs"]))
    return dataclasses.replace(base, **overrides)
