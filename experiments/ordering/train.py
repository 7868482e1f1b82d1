"""Training and evaluation of one (task, mode, scheme) group: all seeds at once under ``jax.vmap``.

One group compiles two programs: the training chunk (``check_every`` steps under ``lax.scan`` followed by
the criterion check on the fixed validation set) and the test evaluation. Shapes are fixed (packed rows, see
:mod:`experiments.ordering.tasks`), so neither recompiles for another length or another chunk.

Training data is generated inside the compiled step from ``fold_in(key(seed), step)``: a seed's data, initial
parameters and randomized positions depend on its seed only. A seed that meets the criterion stops: its
parameters and optimizer state are frozen while the other seeds of the group train on, so the group's result
for a seed does not depend on which other seeds share the group.

Data parallelism: the rows of every batch are sharded over a one-axis ``jax.sharding.Mesh`` of all devices
(axis ``"data"``); parameters are replicated. The same code runs on one CPU, several host devices, a GPU or
a TPU.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from experiments.ordering import tasks
from experiments.ordering.config import (
    ExperimentConfig,
    SchemeSpec,
    check_positions,
    position_range,
    scheme_spec,
)
from experiments.ordering.model import Transformer, init_cache

__all__ = [
    "make_mesh",
    "GroupSetup",
    "setup_group",
    "train_group",
    "evaluation_sets",
    "loss_and_accuracy",
]

DATA_AXIS = "data"


def make_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh (``"data"``) over ``devices`` (default: all devices)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def _rows_sharding(mesh: Mesh, leading: int) -> NamedSharding:
    """Shards the rows axis, which follows ``leading`` unsharded axes, over the mesh."""
    return NamedSharding(mesh, P(*([None] * leading), DATA_AXIS))


@dataclasses.dataclass(frozen=True)
class EvaluationSet:
    """A fixed evaluation set: its examples (host) and the packed batch the model reads (device).

    Attributes:
      examples: the `tasks.Examples`.
      batch: the `tasks.Batch` on the devices, rows sharded (padded to a multiple of the device count).
      output_lengths: `[examples]` int32 on the devices.
      block_rows: rows evaluated at a time (the row count is a multiple of it, and it of the device count).
    """

    examples: tasks.Examples
    batch: tasks.Batch
    output_lengths: jax.Array
    block_rows: int


def evaluation_block_rows(config: ExperimentConfig, rows: int, row_length: int, devices: int) -> int:
    """Rows evaluated at a time, so that one block's attention weights (all seeds) stay below 2**30 numbers
    (4 GiB of float32): the whole set at once for the quick preset; blocks of a few dozen rows for the full
    preset's rows of 1000-1500 tokens, which would otherwise need hundreds of gigabytes."""
    per_row = len(config.seeds) * config.model.num_heads * row_length * row_length
    block = max(devices, (2**30 // per_row) // devices * devices)
    return min(block, -(-rows // devices) * devices)


def evaluation_sets(
    config: ExperimentConfig, task: tasks.Task, mode: str, randomized: bool, mesh: Mesh
) -> tuple[EvaluationSet, EvaluationSet]:
    """The fixed validation (lengths ``1 … N``) and test (``1 … 4N``) sets of a (task, mode).

    The examples depend only on ``config.data_seed``, the task and the lengths: every scheme and seed is
    evaluated on the same examples (a paired comparison). Randomized schemes get positions drawn once per
    example from the same seed; the others ``0, 1, …``. The validation set and the encoder's test set are
    packed two examples per row; the decoder's test set has one example per row (greedy decoding runs all
    rows in lockstep).

    Returns:
      ``(validation, test)``.
    """
    max_positions = position_range(task, config.test_max_length)
    sets = []
    for index, (max_length, per_length, paired) in enumerate(
        (
            (config.train_max_length, config.validation_per_length, True),
            (config.test_max_length, config.test_per_length, mode == "encoder"),
        )
    ):
        rng = np.random.default_rng([config.data_seed, index])
        lengths = tasks.evaluation_lengths(max_length, per_length, paired=paired)
        examples = tasks.make_examples(task, rng, lengths, max_length)
        positions_rng = np.random.default_rng([config.data_seed, index, 1])
        positions = None
        if randomized:
            positions = tasks.sorted_random_positions(
                positions_rng,
                examples.lengths + examples.output_lengths,
                int(task.sequence_length(max_length)),
                max_positions,
            )
        row_length = task.pair_length(max_length) if paired else task.sequence_length(max_length)
        batch = tasks.pack_examples(
            task,
            examples,
            mode=mode,
            segments_per_row=2 if paired else 1,
            row_length=int(row_length),
            example_positions=positions,
        )
        check_positions(batch.positions, max_positions, f"{task.name} evaluation set")
        block = evaluation_block_rows(config, batch.tokens.shape[0], int(row_length), mesh.size)
        batch = jax.device_put(tasks.pad_rows(batch, block), _rows_sharding(mesh, 0))
        replicated = NamedSharding(mesh, P())
        output_lengths = jax.device_put(examples.output_lengths, replicated)
        sets.append(EvaluationSet(examples, batch, output_lengths, block))
    return sets[0], sets[1]


def loss_and_accuracy(logits: jax.Array, batch: tasks.Batch) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy over the output tokens of a batch (padding and inputs excluded).

    Args:
      logits: `[rows, length, classes]`.
      batch: the `tasks.Batch` (`[rows, length]` fields).

    Returns:
      ``(loss, accuracy)`` scalars: the loss is the mean over output tokens.
    """
    weights = batch.weights.astype(jnp.float32)
    targets = batch.targets.astype(jnp.int32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    total = jnp.maximum(weights.sum(), 1.0)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    return (ce * weights).sum() / total, (correct * weights).sum() / total


def _per_example(values: jax.Array, batch: tasks.Batch, num_examples: int) -> jax.Array:
    """Sums ``values`` `[rows, length]` over the output tokens of each example -> `[examples]`."""
    ids = jnp.where(batch.weights > 0, batch.example_ids, num_examples).reshape(-1)
    return jax.ops.segment_sum(values.reshape(-1), ids, num_examples + 1)[:num_examples]


@dataclasses.dataclass
class GroupSetup:
    """Everything one group needs: model, optimizer, training sampler and evaluation sets."""

    config: ExperimentConfig
    task: tasks.Task
    mode: str
    spec: SchemeSpec
    model: Transformer
    optimizer: optax.GradientTransformation
    validation: EvaluationSet
    test: EvaluationSet
    mesh: Mesh

    @property
    def rows(self) -> int:
        return self.config.batch_size // 2

    def training_data(self, chunk: int) -> tasks.Batch:
        """The training batches of one chunk, `[check_every, seeds, rows, row_length]` fields.

        Seed ``s`` draws from ``default_rng([s, chunk])``: its data do not depend on the other seeds, the
        device count or the backend. Compact dtypes keep the host-to-device copy small.
        """
        config, task = self.config, self.task
        steps = config.check_every
        max_positions = position_range(task, config.test_max_length) if self.spec.randomized else None
        per_seed = []
        for seed in config.seeds:
            batch = tasks.training_batch(
                task,
                np.random.default_rng([seed, chunk]),
                mode=self.mode,
                rows=steps * self.rows,
                max_length=config.train_max_length,
                max_positions=max_positions,
            )
            check_positions(batch.positions, position_range(task, config.test_max_length), "training data")
            per_seed.append(batch)
        fields = []
        for name in tasks.Batch._fields:
            stacked = np.stack([getattr(b, name) for b in per_seed])  # [seeds, steps * rows, T]
            stacked = stacked.reshape(len(per_seed), steps, self.rows, -1).swapaxes(0, 1)
            fields.append(stacked.astype(_COMPACT[name]))
        # Training needs no example ids: an empty last axis keeps the structure without the copy.
        fields[-1] = fields[-1][..., :0]
        return tasks.Batch(*fields)


# Training data travel compactly; the step widens them.
_COMPACT = {
    "tokens": np.int8,
    "positions": np.int32,
    "segment_ids": np.int8,
    "targets": np.int8,
    "weights": np.int8,
    "example_ids": np.int32,
}


def _widen(batch: tasks.Batch) -> tasks.Batch:
    return tasks.Batch(
        *(
            a.astype(jnp.float32 if name == "weights" else jnp.int32)
            for name, a in zip(tasks.Batch._fields, batch, strict=True)
        )
    )


def setup_group(config: ExperimentConfig, task_name: str, mode: str, scheme: str, mesh: Mesh) -> GroupSetup:
    """Builds the model, optimizer and fixed evaluation sets of one group.

    Raises:
      ValueError: if the batch rows cannot be split evenly over the mesh's devices.
    """
    task = tasks.get_task(task_name)
    spec = scheme_spec(scheme)
    rows = config.batch_size // 2
    if rows % mesh.size:
        raise ValueError(
            f"setup_group(batch_size={config.batch_size}): the {rows} rows of a batch (two examples per "
            f"row) must be divisible by the number of devices ({mesh.size})"
        )
    max_positions = position_range(task, config.test_max_length)
    module = spec.module(config.model, mode=mode, max_positions=max_positions)
    model = Transformer(module, config.model, tasks.VOCAB_SIZE, tasks.NUM_CLASSES, causal=mode == "decoder")
    optimizer = make_optimizer(config.learning_rate, config.warmup_steps, config.grad_clip)
    validation, test = evaluation_sets(config, task, mode, spec.randomized, mesh)
    return GroupSetup(config, task, mode, spec, model, optimizer, validation, test, mesh)


@functools.cache
def make_optimizer(learning_rate: float, warmup_steps: int, grad_clip: float) -> optax.GradientTransformation:
    """Adam with linear warm-up and global-norm clipping, on one flat parameter vector (a handful of large
    operations instead of a few per parameter: quicker to compile and to run for small models). Cached, so
    that equal settings give the same object and the compiled programs built from it are reused."""
    schedule = optax.linear_schedule(0.0, learning_rate, max(warmup_steps, 1))
    return optax.flatten(optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(schedule)))


@functools.cache
def programs(model: Transformer, optimizer: optax.GradientTransformation, mesh: Mesh) -> tuple[Any, Any]:
    """The jitted training chunk and test evaluation of a model.

    Cached on (model, optimizer, mesh): groups whose programs are the same (a scheme and its randomized
    variant, tasks with the same shapes, a rerun) reuse the compiled executables instead of recompiling.
    """
    return (
        jax.jit(_train_chunk_fn(model, optimizer, mesh), donate_argnums=(0, 1)),
        jax.jit(_test_fn(model, mesh), static_argnums=3),
    )


def _forward(model: Transformer, params: Any, batch: tasks.Batch) -> jax.Array:
    return model.apply(params, batch.tokens, batch.positions, batch.segment_ids)


def _exact_match(model: Transformer, params: Any, batch: tasks.Batch, output_lengths: jax.Array) -> jax.Array:
    """Fraction of examples whose outputs are all right (teacher-forced for the decoder, which for
    whole-sequence exactness is the same as greedy decoding: both fail at the first wrong output)."""
    logits = _forward(model, params, batch)
    correct = (jnp.argmax(logits, -1) == batch.targets).astype(jnp.int32)
    per_example = _per_example(correct, batch, output_lengths.shape[0])
    return jnp.mean(per_example == output_lengths)


def _train_chunk_fn(model: Transformer, optimizer: optax.GradientTransformation, mesh: Mesh):

    def loss_fn(params, batch):
        return loss_and_accuracy(_forward(model, params, batch), batch)

    def seed_step(params, opt_state, batch, active):
        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)

        def keep(new, old):
            return jnp.where(active, new, old)

        return (
            jax.tree.map(keep, new_params, params),
            jax.tree.map(keep, new_opt_state, opt_state),
            loss,
            accuracy,
        )

    def chunk(params, opt_state, data, active, validation, output_lengths):
        def body(carry, batch):
            params, opt_state = carry
            batch = jax.lax.with_sharding_constraint(_widen(batch), _rows_sharding(mesh, 1))
            params, opt_state, loss, accuracy = jax.vmap(seed_step)(params, opt_state, batch, active)
            return (params, opt_state), (loss, accuracy)

        (params, opt_state), (losses, accuracies) = jax.lax.scan(body, (params, opt_state), data)
        exact = jax.vmap(lambda p: _exact_match(model, p, validation, output_lengths))(params)
        return params, opt_state, losses.mean(0), accuracies.mean(0), exact

    return chunk


def _test_fn(model: Transformer, mesh: Mesh):
    """Per-seed, per-example test metrics: output tokens right (encoder: one pass; decoder: greedy
    autoregressive decoding, plus teacher-forced tokens right). Rows are evaluated ``block_rows`` at a time
    (``lax.map``) to bound memory."""

    def block_metrics(params, batch, input_lengths):
        num = input_lengths.shape[0]
        logits = _forward(model, params, batch)
        forced = (jnp.argmax(logits, -1) == batch.targets).astype(jnp.int32)
        forced = _per_example(forced, batch, num)
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
        return {"correct": _per_example(greedy, batch, num), "teacher_forced_correct": forced}

    def one(params, blocks, input_lengths):
        per_block = jax.lax.map(lambda block: block_metrics(params, block, input_lengths), blocks)
        return jax.tree.map(lambda a: a.sum(0), per_block)

    def test(params, batch, input_lengths, block_rows):
        blocks = jax.tree.map(lambda a: a.reshape((-1, block_rows) + a.shape[1:]), batch)
        blocks = jax.lax.with_sharding_constraint(blocks, _rows_sharding(mesh, 1))
        return jax.vmap(one, in_axes=(0, None, None))(params, blocks, input_lengths)

    return test


def init_parameters(setup: GroupSetup, seeds: list[int]) -> tuple[Any, Any]:
    """Initial parameters and optimizer states of all seeds (stacked on a leading seed axis).

    Runs op by op rather than as one compiled program: the random initializers would make that program
    slow to compile for every group, while single operations compile once per shape and are reused by every
    later group. The dummy input has a fixed shape for the same reason (parameter shapes do not depend on it).
    """
    tokens = jnp.zeros((1, 2), jnp.int32)
    positions = jnp.arange(2, dtype=jnp.int32)[None]
    segments = jnp.ones((1, 2), jnp.int32)

    def init(seed_key):
        params = setup.model.init(seed_key, tokens, positions, segments)
        return params, setup.optimizer.init(params)

    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    return jax.vmap(init)(keys)


def _aggregate(values: np.ndarray, lengths: np.ndarray, max_length: int) -> np.ndarray:
    """Means of ``values`` `[seeds, examples]` per input length -> `[seeds, max_length]`."""
    out = np.zeros((values.shape[0], max_length))
    for n in range(1, max_length + 1):
        out[:, n - 1] = values[:, lengths == n].mean(axis=1)
    return out


def train_group(
    setup: GroupSetup,
    *,
    progress: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
) -> dict[str, Any]:
    """Trains every seed of a group to the criterion or the step cap, then evaluates on the test set.

    Args:
      setup: from `setup_group`.
      progress: called after every chunk with ``(steps_done, mean losses [seeds], mean accuracies [seeds])``.

    Returns:
      A JSON-ready record: per-seed steps to criterion (``None`` if stopped by the cap), training curves,
      per-seed per-length test metrics, timings.
    """
    config, mesh = setup.config, setup.mesh
    seeds = list(config.seeds)
    replicated = NamedSharding(mesh, P())
    data_sharding = _rows_sharding(mesh, 2)
    validation, test = setup.validation, setup.test

    timings = {"compile_seconds": 0.0, "train_seconds": 0.0, "test_seconds": 0.0}
    t0 = time.perf_counter()
    params, opt_state = jax.device_put(init_parameters(setup, seeds), replicated)
    active = jax.device_put(np.ones(len(seeds), bool), replicated)
    data = jax.device_put(setup.training_data(0), data_sharding)
    chunk, test_program = programs(setup.model, setup.optimizer, mesh)
    chunk = chunk.lower(params, opt_state, data, active, validation.batch, validation.output_lengths).compile()
    timings["compile_seconds"] += time.perf_counter() - t0

    steps_to_criterion: list[int | None] = [None] * len(seeds)
    curve: dict[str, list] = {"step": [], "loss": [], "accuracy": [], "validation_exact_match": []}
    step, index = 0, 0
    t0 = time.perf_counter()
    while step < config.max_steps and any(s is None for s in steps_to_criterion):
        outputs = chunk(params, opt_state, data, active, validation.batch, validation.output_lengths)
        index += 1
        step += config.check_every
        if step < config.max_steps:  # prepare the next chunk's data while this one runs
            data = jax.device_put(setup.training_data(index), data_sharding)
        params, opt_state = outputs[:2]
        losses, accuracies, exact = (np.asarray(a, dtype=float) for a in outputs[2:])
        was_active = [s is None for s in steps_to_criterion]
        for i in range(len(seeds)):
            if was_active[i] and exact[i] >= config.criterion:
                steps_to_criterion[i] = step
        # A frozen seed's curve keeps the numbers of the chunk in which it stopped.
        curve["step"].append(step)
        for name, values in (("loss", losses), ("accuracy", accuracies), ("validation_exact_match", exact)):
            previous = curve[name][-1] if curve[name] else None
            curve[name].append(
                [float(v) if was_active[i] or previous is None else previous[i] for i, v in enumerate(values)]
            )
        active = jax.device_put(np.asarray([s is None for s in steps_to_criterion]), replicated)
        if progress is not None:
            progress(step, losses, accuracies)
    jax.block_until_ready(params)
    timings["train_seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    input_lengths = jax.device_put(test.examples.lengths, replicated)
    test_fn = test_program.lower(params, test.batch, input_lengths, test.block_rows).compile()
    timings["compile_seconds"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = {k: np.asarray(v) for k, v in test_fn(params, test.batch, input_lengths).items()}
    timings["test_seconds"] = time.perf_counter() - t0

    examples = test.examples
    lengths, out_lengths = examples.lengths, examples.output_lengths
    l_max = config.test_max_length
    test_record: dict[str, Any] = {"lengths": list(range(1, l_max + 1))}
    for name, correct in metrics.items():
        prefix = "" if name == "correct" else "teacher_forced_"
        test_record[prefix + "token_accuracy"] = _aggregate(correct / out_lengths, lengths, l_max).tolist()
        test_record[prefix + "exact_match"] = _aggregate(
            (correct == out_lengths).astype(float), lengths, l_max
        ).tolist()
    if setup.mode == "encoder":
        ceiling = tasks.analytic_ceiling(examples)
        test_record["ceiling"] = _aggregate(ceiling[None], lengths, l_max)[0].tolist()
        test_record["ceiling_per_example"] = ceiling.tolist()
        test_record["token_accuracy_per_example"] = (metrics["correct"] / out_lengths).tolist()
    return {
        "task": setup.task.name,
        "mode": setup.mode,
        "scheme": setup.spec.name,
        "seeds": seeds,
        "steps_to_criterion": steps_to_criterion,
        "steps_trained": [s if s is not None else step for s in steps_to_criterion],
        "stopped_by_cap": [s is None for s in steps_to_criterion],
        "curve": curve,
        "test": test_record,
        "chance": setup.task.chance,
        "device_count": mesh.size,
        **timings,
    }
