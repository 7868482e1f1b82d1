"""Training of one group (every seed of a task, mode, scheme and learning rate) under ``jax.vmap``.

Equal budgets: every scheme and seed of a (task, mode) trains the same number of steps
(`ExperimentConfig.steps_for`) with linear warm-up and cosine decay of the learning rate to 0 (or, as the
reference code, a constant learning rate); the final parameters are the reported model (nothing is selected
on validation or test data). Every ``check_every`` steps the in-distribution validation exact match is
recorded; the first check at the criterion is the secondary steps-to-criterion column.

One group compiles two programs: the training chunk (``check_every`` steps under ``lax.scan`` followed by
the validation check) and the test evaluation (:mod:`experiments.ordering.evaluate`). Shapes are fixed
(packed rows, :mod:`experiments.ordering.data`), so neither recompiles for another chunk.

A seed's data, initial parameters, randomized positions and dropout depend on its seed only (not on the
other seeds of the group, the learning rate, the device count or the backend).
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

from experiments.ordering import data, evaluate, tasks
from experiments.ordering.checkpoint import GroupCheckpoints
from experiments.ordering.config import ExperimentConfig, Group, SchemeSpec, check_positions, scheme_spec
from experiments.ordering.evaluate import EvaluationSet, exact_match, forward, make_mesh, rows_sharding
from experiments.ordering.model import Transformer

__all__ = [
    "make_mesh",
    "GroupSetup",
    "check_devices",
    "setup_group",
    "make_optimizer",
    "learning_rate_schedule",
    "train_group",
    "loss_and_accuracy",
    "init_parameters",
]


def loss_and_accuracy(
    logits: jax.Array, batch: data.Batch, reduction: str = "token_mean", examples: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy and accuracy over the output tokens of a batch (padding and inputs excluded).

    Args:
      logits: `[rows, length, classes]`.
      batch: the `data.Batch` (`[rows, length]` fields).
      reduction: ``"token_mean"`` (the loss is the mean over output tokens) or ``"sequence_sum"`` (summed
        over each example's output tokens, averaged over the ``examples`` of the batch: the reference's).
      examples: examples in the batch (``"sequence_sum"`` only).

    Returns:
      ``(loss, accuracy)`` scalars; the accuracy is the mean over output tokens.
    """
    weights = batch.weights.astype(jnp.float32)
    targets = batch.targets.astype(jnp.int32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    total = jnp.maximum(weights.sum(), 1.0)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    loss = (ce * weights).sum() / (total if reduction == "token_mean" else examples)
    return loss, (correct * weights).sum() / total


@dataclasses.dataclass
class GroupSetup:
    """Everything one group needs: model, optimizer, budget and evaluation sets."""

    config: ExperimentConfig
    group: Group
    task: tasks.Task
    mode: str
    spec: SchemeSpec
    model: Transformer
    optimizer: optax.GradientTransformation
    steps: int
    validation: EvaluationSet
    test: EvaluationSet | None
    mesh: Mesh

    @property
    def rows(self) -> int:
        return self.config.rows_per_step

    @property
    def loss_options(self) -> tuple[str, int | None]:
        """``(reduction, examples per step)`` of the training loss (`loss_and_accuracy`)."""
        reduction = self.config.loss_reduction
        return reduction, (self.config.batch_size if reduction == "sequence_sum" else None)

    def training_data(self, chunk: int) -> data.Batch:
        """The training batches of chunk ``chunk``, `[check_every, seeds, rows, row_length]` fields
        (positions `[…, layers]` with per-layer draws)."""
        config = self.config
        batch = data.training_chunk(
            self.task,
            self.mode,
            seeds=config.seeds,
            chunk=chunk,
            steps=config.check_every,
            rows=self.rows,
            max_length=config.train_max_length,
            position_range=config.position_range if self.spec.randomized else None,
            per_batch=config.position_draw == "batch",
            one_length=config.length_sampling == "one_per_batch",
            draws=config.position_draws(self.spec.randomized),
            start_at_zero=self.spec.draw_starts_at_zero,
        )
        check_positions(batch.positions, config.table_rows(self.task.name, self.spec.randomized), "training")
        return batch


def check_devices(config: ExperimentConfig, device_count: int) -> None:
    """Raises ``ValueError`` if the rows of a batch cannot be split evenly over ``device_count`` devices."""
    if (rows := config.rows_per_step) % device_count:
        per_row = "two examples per row" if config.length_sampling == "paired" else "one example per row"
        raise ValueError(
            f"setup_group(batch_size={config.batch_size}): the {rows} rows of a batch ({per_row}) must be "
            f"divisible by the number of devices ({device_count})"
        )


def setup_group(config: ExperimentConfig, group: Group, mesh: Mesh, *, test: bool = True) -> GroupSetup:
    """Builds the model, optimizer and fixed evaluation sets of one group.

    Args:
      config, group, mesh: the run, the group and the devices.
      test: also build the test set (``False`` for timing the training alone: the reference protocol's test
        set, 512 examples of every length up to 500, takes gigabytes).

    Raises:
      ValueError: if the batch rows cannot be split evenly over the mesh's devices.
    """
    task = tasks.get_task(group.task)
    spec = scheme_spec(group.scheme)
    check_devices(config, mesh.size)

    def build():
        return spec.module(
            config.model, mode=group.mode, max_positions=config.table_rows(task.name, spec.randomized)
        )

    module = build()
    if config.scheme_parameters == "per_layer" and spec.base in ("relative", "relative_map"):
        # One module, with its own parameters, per attention layer (the model takes a tuple per layer).
        module = tuple(build() for _ in range(config.model.num_layers))
    model = Transformer(
        module,
        config.model,
        tasks.VOCAB_SIZE,
        tasks.NUM_CLASSES,
        causal=group.mode == "decoder",
        drop_embeddings=config.model.embedding_dropout == "always" or spec.base in ("sinusoidal", "learned"),
    )
    steps = config.steps_for(group.task, group.mode)
    optimizer = make_optimizer(
        group.learning_rate, config.warmup_steps, steps, config.grad_clip, config.learning_rate_schedule
    )
    validation, test_set = evaluate.evaluation_sets(
        config, task, group.mode, spec.randomized, mesh, start_at_zero=spec.draw_starts_at_zero, test=test
    )
    return GroupSetup(
        config, group, task, group.mode, spec, model, optimizer, steps, validation, test_set, mesh
    )


def learning_rate_schedule(
    peak: float, warmup_steps: int, steps: int, kind: str = "warmup_cosine"
) -> optax.Schedule | float:
    """``"warmup_cosine"``: linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine decay to 0
    at step ``steps``; ``"constant"``: ``peak`` throughout (the reference's Adam).

    >>> schedule = learning_rate_schedule(1.0, 10, 110)
    >>> [round(float(schedule(s)), 3) for s in (0, 5, 10, 60, 110)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if kind == "constant":
        return peak
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup_steps, steps, end_value=0.0)


@functools.cache
def make_optimizer(
    learning_rate: float, warmup_steps: int, steps: int, grad_clip: float, schedule: str = "warmup_cosine"
) -> optax.GradientTransformation:
    """Adam with `learning_rate_schedule` and global-norm clipping, on one flat parameter vector (a handful
    of large operations instead of a few per parameter: quicker to compile and to run for small models).
    Cached, so that equal settings give the same object and the compiled programs built from it are
    reused."""
    rate = learning_rate_schedule(learning_rate, warmup_steps, steps, schedule)
    return optax.flatten(optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(rate)))


@functools.cache
def programs(
    model: Transformer,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    reduction: str = "token_mean",
    examples: int | None = None,
) -> Any:
    """The jitted training chunk of a model, cached on (model, optimizer, mesh, loss reduction): groups
    whose programs are the same (a scheme and its randomized variant, a rerun) reuse the compiled
    executable."""
    return jax.jit(_train_chunk_fn(model, optimizer, mesh, reduction, examples), donate_argnums=(0, 1))


def _train_chunk_fn(
    model: Transformer,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    reduction: str = "token_mean",
    examples: int | None = None,
):
    dropout = model.config.dropout > 0

    def loss_fn(params, batch, key):
        if dropout:
            logits = model.apply(
                params,
                batch.tokens,
                batch.positions,
                batch.segment_ids,
                deterministic=False,
                rngs={"dropout": key},
            )
        else:
            logits = forward(model, params, batch)
        return loss_and_accuracy(logits, batch, reduction, examples)

    def seed_step(params, opt_state, batch, seed, step):
        key = jax.random.fold_in(jax.random.key(seed), step) if dropout else None
        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, accuracy

    def chunk(params, opt_state, batches, seeds, first_step, validation, output_lengths):
        def body(carry, inputs):
            params, opt_state = carry
            batch, step = inputs
            batch = jax.lax.with_sharding_constraint(_widen(batch), rows_sharding(mesh, 1))
            params, opt_state, loss, accuracy = jax.vmap(seed_step, in_axes=(0, 0, 0, 0, None))(
                params, opt_state, batch, seeds, step
            )
            return (params, opt_state), (loss, accuracy)

        steps = first_step + jnp.arange(batches.tokens.shape[0])
        (params, opt_state), (losses, accuracies) = jax.lax.scan(body, (params, opt_state), (batches, steps))
        exact = jax.vmap(lambda p: exact_match(model, p, validation, output_lengths))(params)
        finite = jnp.isfinite(losses)  # [steps, seeds]: where a seed's loss first is not, it diverged
        first_non_finite = jnp.where(finite.all(0), -1, jnp.argmin(finite, axis=0))
        return params, opt_state, losses.mean(0), accuracies.mean(0), exact, first_non_finite

    return chunk


def _widen(batch: data.Batch) -> data.Batch:
    return data.Batch(
        *(
            a.astype(jnp.float32 if name == "weights" else jnp.int32)
            for name, a in zip(data.Batch._fields, batch, strict=True)
        )
    )


def table_rows_check(setup: GroupSetup, params: Any) -> dict[str, Any]:
    """How far training moved the learned table's rows from their initial values, for the rows whose
    positions occur in training (``0 … sequence_length(N) - 1``) and for the rows beyond: a row never read
    gets no gradient, so it is exactly at its initial value (an untrained row, not a learned encoding).

    Returns:
      ``{"trained_rows", "rows", "max_abs_change_seen", "max_abs_change_unseen"}`` (per seed).
    """
    initial, _ = init_parameters(setup, list(setup.config.seeds))
    before = np.asarray(initial["params"]["scheme"]["embedding"])  # [seeds, rows, width]
    after = np.asarray(params["params"]["scheme"]["embedding"])
    change = np.abs(after - before).max(axis=-1)  # [seeds, rows]
    seen = int(setup.task.sequence_length(setup.config.train_max_length))
    return {
        "trained_rows": seen,
        "rows": int(change.shape[1]),
        "max_abs_change_seen": change[:, :seen].max(axis=1).tolist(),
        "max_abs_change_unseen": change[:, seen:].max(axis=1, initial=0.0).tolist(),
    }


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


def train_group(
    setup: GroupSetup,
    *,
    progress: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    checkpoints: GroupCheckpoints | None = None,
) -> dict[str, Any]:
    """Trains every seed of a group for the run's budget, then evaluates the final model on the test set.

    Args:
      setup: from `setup_group`.
      progress: called after every chunk with ``(steps_done, mean losses [seeds], mean accuracies [seeds])``.
      checkpoints: where to log every chunk and checkpoint the training state; training resumes from its
        latest checkpoint, if any, and continues exactly as the uninterrupted run did.

    Returns:
      A JSON-ready record: the budget, per-seed steps to criterion (``None``: not reached), training curves,
      per-seed final validation exact match, per-seed first step whose training loss was not finite
      (``first_non_finite_step``; ``None``: finite throughout), per-seed per-length test metrics, timings.
    """
    config, mesh = setup.config, setup.mesh
    seeds = list(config.seeds)
    replicated = NamedSharding(mesh, P())
    data_sharding = rows_sharding(mesh, 2)
    validation = setup.validation

    timings = {"compile_seconds": 0.0, "train_seconds": 0.0, "test_seconds": 0.0}
    t0 = time.perf_counter()
    params, opt_state = jax.device_put(init_parameters(setup, seeds), replicated)
    seed_array = jax.device_put(np.asarray(seeds, np.uint32), replicated)
    batches = jax.device_put(setup.training_data(0), data_sharding)
    args = (seed_array, np.int32(0), validation.batch, validation.output_lengths)
    program = programs(setup.model, setup.optimizer, mesh, *setup.loss_options)
    chunk = program.lower(params, opt_state, batches, *args).compile()
    timings["compile_seconds"] += time.perf_counter() - t0

    steps_to_criterion: list[int | None] = [None] * len(seeds)
    first_non_finite: list[int | None] = [None] * len(seeds)  # the step of a seed's first non-finite loss
    curve: dict[str, list] = {"step": [], "loss": [], "accuracy": [], "validation_exact_match": []}
    step, index = 0, 0
    resumed = checkpoints.resume((params, opt_state)) if checkpoints is not None else None
    if resumed is not None:
        step, (params, opt_state), saved = resumed
        curve, steps_to_criterion, index = (
            saved["curve"],
            saved["steps_to_criterion"],
            step // config.check_every,
        )
        first_non_finite = saved.get("first_non_finite_step", first_non_finite)
        batches = jax.device_put(setup.training_data(index), data_sharding)
    t0 = time.perf_counter()
    while step < setup.steps:
        outputs = chunk(params, opt_state, batches, seed_array, np.int32(step), *args[2:])
        index += 1
        step += config.check_every
        if step < setup.steps:  # prepare the next chunk's data while this one runs
            batches = jax.device_put(setup.training_data(index), data_sharding)
        params, opt_state = outputs[:2]
        losses, accuracies, exact = (np.asarray(a, dtype=float) for a in outputs[2:5])
        bad = np.asarray(outputs[5])
        for i in range(len(seeds)):
            if steps_to_criterion[i] is None and exact[i] >= config.criterion:
                steps_to_criterion[i] = step
            if first_non_finite[i] is None and bad[i] >= 0:
                first_non_finite[i] = step - config.check_every + int(bad[i]) + 1
        curve["step"].append(step)
        for name, values in (("loss", losses), ("accuracy", accuracies), ("validation_exact_match", exact)):
            curve[name].append([float(v) for v in values])
        if checkpoints is not None:
            host = {
                "curve": curve,
                "steps_to_criterion": steps_to_criterion,
                "first_non_finite_step": first_non_finite,
            }
            checkpoints.after_chunk(step, (params, opt_state), host, final=step >= setup.steps)
        if progress is not None:
            progress(step, losses, accuracies)
    jax.block_until_ready(params)
    timings["train_seconds"] = time.perf_counter() - t0

    test_record, test_timings = evaluate.test_record(setup, params)
    if setup.spec.base == "learned" and not setup.spec.randomized:
        test_record["table_rows"] = table_rows_check(setup, params)
    timings["compile_seconds"] += test_timings["compile_seconds"]
    timings["test_seconds"] = test_timings["test_seconds"]
    return {
        "task": setup.task.name,
        "mode": setup.mode,
        "scheme": setup.spec.name,
        "learning_rate": setup.group.learning_rate,
        "seeds": seeds,
        "steps": setup.steps,
        "steps_to_criterion": steps_to_criterion,
        "final_validation_exact_match": curve["validation_exact_match"][-1],
        "first_non_finite_step": first_non_finite,
        "curve": curve,
        "test": test_record,
        "chance": setup.task.chance,
        "needs_position": setup.task.needs_position[setup.mode],
        "device_count": mesh.size,
        **timings,
    }
