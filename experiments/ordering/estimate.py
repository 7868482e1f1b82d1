"""The projected cost of a run, from a few timed training steps of each group (nothing is trained or written).

A group's training time is modelled as ``steps × per_step + checks × per_check``: its compiled chunk is
timed at two lengths (``k`` and ``2k`` steps, each chunk ending with the validation check), which separates
the cost of a step from the cost of a check (when the two cannot be told apart, the whole chunk counts as
steps: an upper bound). Groups that differ only in their learning rate run the same
program, so one timing serves them all. Compilation and the final test evaluation are not included.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from experiments.ordering import config as config_lib

__all__ = ["estimate", "format_estimate"]


def _chunk_seconds(
    config: config_lib.ExperimentConfig, group: config_lib.Group, mesh, steps: int, repeats: int
):
    """Seconds of one compiled chunk of ``steps`` steps (with its validation check) of ``group``."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from experiments.ordering import train

    short = dataclasses.replace(config, steps=steps, check_every=steps, run_steps=(), warmup_steps=0)
    setup = train.setup_group(short, group, mesh, test=False)
    replicated = NamedSharding(mesh, P())
    params, opt_state = jax.device_put(train.init_parameters(setup, list(config.seeds)), replicated)
    batches = jax.device_put(setup.training_data(0), train.rows_sharding(mesh, 2))
    seeds = jax.device_put(np.asarray(config.seeds, np.uint32), replicated)
    args = (seeds, np.int32(0), setup.validation.batch, setup.validation.output_lengths)
    # Not the cached `train.programs`: that one donates the state, which the timing loop reuses.
    chunk = jax.jit(train._train_chunk_fn(setup.model, setup.optimizer, mesh, *setup.loss_options))
    chunk = chunk.lower(params, opt_state, batches, *args).compile()
    jax.block_until_ready(chunk(params, opt_state, batches, *args))  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(chunk(params, opt_state, batches, *args))
        samples.append(time.perf_counter() - start)
    return min(samples)  # the least disturbed run: other processes only ever add time


def estimate(
    config: config_lib.ExperimentConfig,
    *,
    steps: int = 4,
    repeats: int = 3,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Times every group of ``config`` and projects the training time of the whole run.

    Args:
      config: the experiment.
      steps: ``k``: the chunks timed have ``k`` and ``2k`` steps.
      repeats: timed runs of each chunk (the fastest is used).
      progress: called with one line after each timed program (a long preset compiles many), or ``None``.

    Returns:
      ``{"device", "device_count", "groups": [{"group", "steps", "seconds_per_step", "seconds_per_check",
      "hours"}], "hours"}``.

    Raises:
      ValueError: if the batch does not split over the devices.
    """
    import jax

    from experiments.ordering import train

    mesh = train.make_mesh()
    train.check_devices(config, mesh.size)
    device = jax.devices()[0]
    timed: dict[tuple[str, str, str], tuple[float, float]] = {}
    rows = []
    programs = len({(g.task, g.mode, g.scheme) for g in config.groups()})
    for group in config.groups():
        key = (group.task, group.mode, group.scheme)
        if key not in timed:
            one, two = (_chunk_seconds(config, group, mesh, k, repeats) for k in (steps, 2 * steps))
            if two > one:
                timed[key] = ((two - one) / steps, max(2 * one - two, 0.0))
            else:  # too fast to tell apart (or a noisy machine): all of the chunk counts as steps
                timed[key] = (two / (2 * steps), 0.0)
            if progress is not None:
                progress(
                    f"timed {len(timed)}/{programs}: {'/'.join(key)}: {timed[key][0] * 1e3:.2f} ms per step"
                )
        per_step, per_check = timed[key]
        budget = config.steps_for(group.task, group.mode)
        seconds = budget * per_step + budget // config.check_every * per_check
        rows.append(
            {
                "group": group.name,
                "steps": budget,
                "seconds_per_step": per_step,
                "seconds_per_check": per_check,
                "hours": seconds / 3600,
            }
        )
    return {
        "preset": config.preset,
        "device": f"{device.platform} ({getattr(device, 'device_kind', '')})",
        "device_count": mesh.size,
        "groups": rows,
        "hours": sum(r["hours"] for r in rows),
    }


def format_estimate(result: dict[str, Any]) -> str:
    """The estimate as text: one line per group, then the total."""
    lines = [
        f"Projected training time of preset {result['preset']!r} on {result['device_count']} × "
        f"{result['device']} (compilation and test evaluation not included):"
    ]
    width = max(len(r["group"]) for r in result["groups"])
    for r in result["groups"]:
        lines.append(
            f"  {r['group']:<{width}}  {r['steps']:>9,} steps × {r['seconds_per_step'] * 1e3:8.2f} ms "
            f"+ checks {r['seconds_per_check'] * 1e3:8.1f} ms each = {r['hours']:9.3f} h"
        )
    lines.append(f"  total {result['hours']:.3f} h ({len(result['groups'])} groups, one after the other)")
    return "\n".join(lines)
