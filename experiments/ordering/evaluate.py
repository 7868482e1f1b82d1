"""Evaluation of the ordering experiment: the fixed validation and test sets, exact match, greedy decoding.

Every scheme and seed is evaluated on the same examples (``config.data_seed``): a paired comparison. The
validation set (lengths ``1 … N``) gives the in-distribution exact match recorded during training; the test
set (lengths ``1 … test_max_length``) gives the reported metrics of the final model. Encoder: one pass.
Decoder: greedy autoregressive decoding with a key/value cache (plus the teacher-forced numbers, labelled).

Data parallelism: the rows of every batch are sharded over a one-axis ``jax.sharding.Mesh`` of all devices
(axis ``"data"``); parameters are replicated. The same code runs on one CPU, several host devices, a GPU or
a TPU.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from experiments.ordering import data
from experiments.ordering.baselines import analytic_ceiling, most_frequent_baseline
from experiments.ordering.config import ExperimentConfig, check_positions
from experiments.ordering.model import Transformer, init_cache
from experiments.ordering.tasks import PAD, Task, get_task  # noqa: F401 (get_task: doctests)

__all__ = [
    "make_mesh",
    "rows_sharding",
    "EvaluationSet",
    "evaluation_lengths",
    "evaluation_sets",
    "evaluation_sub_batch",
    "answer_position_ablation",
    "evaluation_block_rows",
    "pad_rows",
    "forward",
    "exact_match",
    "test_program",
    "test_record",
]

DATA_AXIS = "data"


def make_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh (``"data"``) over ``devices`` (default: all devices)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def rows_sharding(mesh: Mesh, leading: int) -> NamedSharding:
    """Shards the rows axis, which follows ``leading`` unsharded axes, over the mesh."""
    return NamedSharding(mesh, P(*([None] * leading), DATA_AXIS))


def evaluation_lengths(max_length: int, per_length: int, *, paired: bool) -> np.ndarray:
    """Input lengths of an evaluation set: ``per_length`` examples of every length ``1 … max_length``.

    Args:
      max_length: longest input length.
      per_length: examples per length (even when ``paired`` and ``max_length`` is odd).
      paired: order the lengths so that consecutive pairs are ``(n, max_length + 1 - n)`` (two segments
        per row, every row filled exactly); else in increasing order.

    Returns:
      `[max_length * per_length]` int32 numpy array.

    Raises:
      ValueError: if a paired set with odd ``max_length`` has an odd ``per_length``.

    >>> evaluation_lengths(3, 2, paired=True).tolist()
    [1, 3, 1, 3, 2, 2]
    """
    if not paired:
        return np.repeat(np.arange(1, max_length + 1, dtype=np.int32), per_length)
    if max_length % 2 and per_length % 2:
        raise ValueError(
            f"evaluation_lengths(per_length={per_length}): must be even when max_length "
            f"({max_length}) is odd and the set is paired"
        )
    pairs = []
    for n in range(1, max_length // 2 + 1):
        pairs += [(n, max_length + 1 - n)] * per_length
    if max_length % 2:
        middle = (max_length + 1) // 2
        pairs += [(middle, middle)] * (per_length // 2)
    return np.asarray(pairs, dtype=np.int32).reshape(-1)


def pad_rows(batch: data.Batch, multiple: int) -> data.Batch:
    """Appends empty rows (padding everywhere, weight 0) so that the row count divides ``multiple``.

    >>> rng = np.random.default_rng(0)
    >>> b = data.training_batch(get_task("sort"), rng, mode="encoder", rows=3, max_length=4)
    >>> pad_rows(b, 4).tokens.shape
    (4, 10)
    """
    rows = batch.tokens.shape[0]
    extra = -rows % multiple
    if not extra:
        return batch
    fill = {"tokens": PAD, "example_ids": -1}
    return data.Batch(
        *(
            np.concatenate([a, np.full((extra,) + a.shape[1:], fill.get(name, 0), a.dtype)])
            for name, a in zip(data.Batch._fields, batch, strict=True)
        )
    )


@dataclasses.dataclass(frozen=True)
class EvaluationSet:
    """A fixed evaluation set: its examples (host) and the packed batch the model reads (device).

    Attributes:
      examples: the `data.Examples`.
      batch: the `data.Batch` on the devices, rows sharded (padded to a multiple of the device count).
      output_lengths: `[examples]` int32 on the devices.
      block_rows: rows evaluated at a time (the row count is a multiple of it, and it of the device count).
    """

    examples: data.Examples
    batch: data.Batch
    output_lengths: jax.Array
    block_rows: int


def evaluation_block_rows(config: ExperimentConfig, rows: int, row_length: int, devices: int) -> int:
    """Rows evaluated at a time, so that one block's attention weights (all seeds) stay below 2**30 numbers
    (4 GiB of float32): the whole set at once for the quick preset; blocks of a few dozen rows for the full
    preset's rows of 1000-1500 tokens, which would otherwise need hundreds of gigabytes."""
    per_row = len(config.seeds) * config.model.num_heads * row_length * row_length
    block = max(devices, (2**30 // per_row) // devices * devices)
    return min(block, -(-rows // devices) * devices)


def evaluation_sub_batch(config: ExperimentConfig, per_length: int) -> int:
    """Examples of one length sharing a draw of randomized positions at evaluation: ``evaluation_sub_batch``
    (at most ``per_length``) with ``position_draw="batch"``, else 1 (a draw per example)."""
    return min(config.evaluation_sub_batch, per_length) if config.position_draw == "batch" else 1


def evaluation_sets(
    config: ExperimentConfig,
    task: Task,
    mode: str,
    randomized: bool,
    mesh: Mesh,
    *,
    start_at_zero: bool = False,
    test: bool = True,
) -> tuple[EvaluationSet, EvaluationSet | None]:
    """The fixed validation (lengths ``1 … N``) and test (``1 … 4N``) sets of a (task, mode).

    The examples depend only on ``config.data_seed``, the task and the lengths: every scheme and seed is
    evaluated on the same examples (a paired comparison). Randomized schemes get positions from
    ``[0, config.position_range)`` drawn from the same seed, per example or, with ``position_draw="batch"``,
    a fresh draw of exactly the sequence's length for every sub-batch of ``evaluation_sub_batch`` examples of
    one length (the reference's evaluation); one draw per attention layer with ``position_layers=
    "per_layer"``; ``start_at_zero`` for the randomized relative map. The others get ``0, 1, …``. With
    ``length_sampling="paired"`` the validation set and the encoder's test set are packed two examples per
    row; otherwise, and for the decoder's test set (greedy decoding runs all rows in lockstep), one example
    per row.

    Returns:
      ``(validation, test)`` (``test`` is ``None`` when not asked for).
    """
    table_rows = config.table_rows(task.name, randomized)
    pairs = config.length_sampling == "paired"
    sets: list[EvaluationSet | None] = [None, None]
    for index, (max_length, per_length, paired) in enumerate(
        (
            (config.train_max_length, config.validation_per_length, pairs),
            (config.test_max_length, config.test_per_length, pairs and mode == "encoder"),
        )[: 2 if test else 1]
    ):
        rng = np.random.default_rng([config.data_seed, index])
        lengths = evaluation_lengths(max_length, per_length, paired=paired)
        examples = data.make_examples(task, rng, lengths, max_length)
        positions_rng = np.random.default_rng([config.data_seed, index, 1])
        positions = None
        if randomized:
            positions = data.position_draws(
                positions_rng,
                examples.lengths + examples.output_lengths,
                int(task.sequence_length(max_length)),
                config.position_range,
                share=evaluation_sub_batch(config, per_length),
                draws=config.position_draws(randomized),
                start_at_zero=start_at_zero,
            )
        row_length = task.pair_length(max_length) if paired else task.sequence_length(max_length)
        batch = data.pack_examples(
            task,
            examples,
            mode=mode,
            segments_per_row=2 if paired else 1,
            row_length=int(row_length),
            example_positions=positions,
        )
        check_positions(batch.positions, table_rows, f"{task.name} evaluation set")
        block = evaluation_block_rows(config, batch.tokens.shape[0], int(row_length), mesh.size)
        batch = jax.device_put(pad_rows(batch, block), rows_sharding(mesh, 0))
        replicated = NamedSharding(mesh, P())
        output_lengths = jax.device_put(examples.output_lengths, replicated)
        sets[index] = EvaluationSet(examples, batch, output_lengths, block)
    assert sets[0] is not None
    return sets[0], sets[1]


def forward(model: Transformer, params: Any, batch: data.Batch) -> jax.Array:
    return model.apply(params, batch.tokens, batch.positions, batch.segment_ids)


def exact_match(model: Transformer, params: Any, batch: data.Batch, output_lengths: jax.Array) -> jax.Array:
    """Fraction of examples whose outputs are all right (teacher-forced for the decoder, which for
    whole-sequence exactness is the same as greedy decoding: both fail at the first wrong output)."""
    logits = forward(model, params, batch)
    correct = (jnp.argmax(logits, -1) == batch.targets).astype(jnp.int32)
    right = per_example(correct, batch, output_lengths.shape[0])
    return jnp.mean(right == output_lengths)


def per_example(values: jax.Array, batch: data.Batch, num_examples: int) -> jax.Array:
    """Sums ``values`` `[rows, length]` over the output tokens of each example -> `[examples]`."""
    ids = jnp.where(batch.weights > 0, batch.example_ids, num_examples).reshape(-1)
    return jax.ops.segment_sum(values.reshape(-1), ids, num_examples + 1)[:num_examples]


def _test_fn(model: Transformer, mesh: Mesh):
    """Per-seed, per-example test metrics: output tokens right (encoder: one pass; decoder: greedy
    autoregressive decoding, plus teacher-forced tokens right). Rows are evaluated ``block_rows`` at a time
    (``lax.map``) to bound memory."""

    def block_metrics(params, batch, input_lengths):
        num = input_lengths.shape[0]
        logits = forward(model, params, batch)
        forced = (jnp.argmax(logits, -1) == batch.targets).astype(jnp.int32)
        forced = per_example(forced, batch, num)
        if not model.causal:
            return {"correct": forced}
        rows, length = batch.tokens.shape
        # One example per row: columns 0 … n hold the input and SEP; after that the model reads its own
        # predictions. Padding rows read their (padding) tokens throughout.
        row_example = batch.example_ids[:, 0]
        prompt_end = jnp.where(row_example >= 0, input_lengths[jnp.maximum(row_example, 0)], length)
        cache = init_cache(model.config, rows, length)

        def body(carry, t):
            cache, previous = carry
            token = jnp.where(t <= prompt_end, batch.tokens[:, t], previous)
            logits, cache = model.apply(
                params, token, t, batch.positions, cache, method=Transformer.decode_step
            )
            prediction = jnp.argmax(logits, -1).astype(jnp.int32)
            return (cache, prediction), prediction

        _, predictions = jax.lax.scan(body, (cache, jnp.zeros((rows,), jnp.int32)), jnp.arange(length))
        greedy = (predictions.T == batch.targets).astype(jnp.int32)
        return {"correct": per_example(greedy, batch, num), "teacher_forced_correct": forced}

    def one(params, blocks, input_lengths):
        per_block = jax.lax.map(lambda block: block_metrics(params, block, input_lengths), blocks)
        return jax.tree.map(lambda a: a.sum(0), per_block)

    def test(params, batch, input_lengths, block_rows):
        blocks = jax.tree.map(lambda a: a.reshape((-1, block_rows) + a.shape[1:]), batch)
        blocks = jax.lax.with_sharding_constraint(blocks, rows_sharding(mesh, 1))
        return jax.vmap(one, in_axes=(0, None, None))(params, blocks, input_lengths)

    return test


@functools.cache
def test_program(model: Transformer, mesh: Mesh):
    """The jitted test evaluation of a model (cached: groups with the same model reuse it)."""
    return jax.jit(_test_fn(model, mesh), static_argnums=3)


def _per_length(values: np.ndarray, lengths: np.ndarray, max_length: int) -> np.ndarray:
    """Means of ``values`` `[seeds, examples]` per input length -> `[seeds, max_length]`."""
    out = np.zeros((values.shape[0], max_length))
    for n in range(1, max_length + 1):
        out[:, n - 1] = values[:, lengths == n].mean(axis=1)
    return out


def answer_positions(examples: data.Examples, width: int, train_max_length: int) -> np.ndarray:
    """Positions that move only the output tokens towards the training range: input token ``i`` keeps
    position ``i``, output token ``j`` of an input of length ``n`` gets ``min(n, N) + j`` instead of
    ``n + j`` (``N = train_max_length``; unchanged for ``n ≤ N``). A single-output task's answer then sits
    at ``min(n, N)``, a position seen in training.

    Returns:
      `[examples, width]` int32.

    >>> ex = data.make_examples(get_task("majority"), np.random.default_rng(0), np.array([3, 7]), 7)
    >>> answer_positions(ex, 8, 4).tolist()
    [[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 6, 4]]
    """
    column = np.arange(width)[None, :]
    n = examples.lengths[:, None]
    return np.where(column < n, column, np.minimum(n, train_max_length) + column - n).astype(np.int32)


def answer_position_ablation(setup: Any, params: Any, test_fn: Any) -> dict[str, Any]:
    """The test set again with only the output tokens' positions moved into the training range
    (`answer_positions`): per-seed, per-length per-token accuracy and exact match.

    Separates "the output is read at a position never seen in training" (an untrained learned row, a
    sinusoid the model never saw) from the scheme's length generalization: the inputs, the model and
    everything else are unchanged. For the absolute schemes (``SchemeSpec.absolute``) in the encoder.
    """
    config, test, task = setup.config, setup.test, setup.task
    examples = test.examples
    width = int(task.sequence_length(config.test_max_length))
    paired = setup.mode == "encoder" and config.length_sampling == "paired"
    row_length = task.pair_length(config.test_max_length) if paired else width
    batch = data.pack_examples(
        task,
        examples,
        mode=setup.mode,
        segments_per_row=2 if paired else 1,
        row_length=int(row_length),
        example_positions=answer_positions(examples, width, config.train_max_length),
    )
    batch = jax.device_put(pad_rows(batch, test.block_rows), rows_sharding(setup.mesh, 0))
    input_lengths = jax.device_put(examples.lengths, NamedSharding(setup.mesh, P()))
    correct = np.asarray(test_fn(params, batch, input_lengths)["correct"])
    out_lengths, l_max = examples.output_lengths, config.test_max_length
    return {
        "output_positions": "min(n, train_max_length) + j",
        "token_accuracy": _per_length(correct / out_lengths, examples.lengths, l_max).tolist(),
        "exact_match": _per_length((correct == out_lengths).astype(float), examples.lengths, l_max).tolist(),
    }


def test_record(setup: Any, params: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """Evaluates the final parameters of every seed on the test set.

    Args:
      setup: the group's `train.GroupSetup`.
      params: parameters stacked on a leading seed axis.

    Returns:
      ``(record, timings)``: per-seed, per-length metrics (per-token accuracy, exact match; the decoder's
      teacher-forced numbers too), the per-length most-frequent-symbol baseline and, for the encoder, the
      analytic ceiling without positions; ``{"compile_seconds", "test_seconds"}``.
    """
    import time

    config, test = setup.config, setup.test
    if test is None:
        raise ValueError("test_record(setup): set up without a test set (setup_group(test=False))")
    replicated = NamedSharding(setup.mesh, P())
    t0 = time.perf_counter()
    input_lengths = jax.device_put(test.examples.lengths, replicated)
    test_fn = test_program(setup.model, setup.mesh).lower(params, test.batch, input_lengths, test.block_rows)
    test_fn = test_fn.compile()
    timings = {"compile_seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    metrics = {k: np.asarray(v) for k, v in test_fn(params, test.batch, input_lengths).items()}
    timings["test_seconds"] = time.perf_counter() - t0

    examples = test.examples
    lengths, out_lengths = examples.lengths, examples.output_lengths
    l_max = config.test_max_length
    record: dict[str, Any] = {"lengths": list(range(1, l_max + 1))}
    for name, correct in metrics.items():
        prefix = "" if name == "correct" else "teacher_forced_"
        record[prefix + "token_accuracy"] = _per_length(correct / out_lengths, lengths, l_max).tolist()
        record[prefix + "exact_match"] = _per_length(
            (correct == out_lengths).astype(float), lengths, l_max
        ).tolist()
    record["most_frequent"] = _per_length(most_frequent_baseline(examples)[None], lengths, l_max)[0].tolist()
    if setup.mode == "encoder":
        ceiling = analytic_ceiling(examples)
        record["ceiling"] = _per_length(ceiling[None], lengths, l_max)[0].tolist()
        record["ceiling_per_example"] = ceiling.tolist()
        record["token_accuracy_per_example"] = (metrics["correct"] / out_lengths).tolist()
    if setup.spec.absolute and setup.mode == "encoder" and config.test_max_length > config.train_max_length:
        t0 = time.perf_counter()
        record["answer_position_ablation"] = answer_position_ablation(setup, params, test_fn)
        timings["test_seconds"] += time.perf_counter() - t0
    return record, timings
