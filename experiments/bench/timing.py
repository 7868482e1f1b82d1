"""Timing helpers shared by the benchmark sections: compile time apart, steady-state medians, ratios."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def _block(value: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x, value
    )


def compile_seconds(fn: Callable, *args: Any) -> float:
    """Seconds to lower and compile a jitted ``fn`` for ``args`` (tracing included)."""
    start = time.perf_counter()
    fn.lower(*args).compile()
    return time.perf_counter() - start


def compare(
    candidates: dict[str, tuple[Callable, tuple]], repeats: int = 10, calls: int = 1
) -> dict[str, dict[str, float]]:
    """Times several functions round-robin (so drift in machine load hits all alike).

    Args:
      candidates: name -> (function, its arguments). A jitted function's compile time is measured apart.
      repeats: timed samples per candidate.
      calls: calls dispatched back to back per sample, waiting for the last one only. On an accelerator a
        single call of a sub-millisecond kernel is dominated by the host's dispatch and wait; several calls
        in flight measure the device's time per call. 1 on a CPU, where calls run one after another anyway.

    Returns per name: ``compile_s``, ``median_s``, ``min_s`` (seconds per call).
    """
    results: dict[str, dict[str, float]] = {}
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for name, (fn, args) in candidates.items():
        compile_s = compile_seconds(fn, *args) if hasattr(fn, "lower") else float("nan")
        _block(fn(*args))
        _block(fn(*args))
        results[name] = {"compile_s": compile_s}
    for _ in range(repeats):
        for name, (fn, args) in candidates.items():
            start = time.perf_counter()
            for _ in range(calls - 1):
                fn(*args)
            _block(fn(*args))
            samples[name].append((time.perf_counter() - start) / calls)
    for name, values in samples.items():
        results[name]["median_s"] = statistics.median(values)
        results[name]["min_s"] = min(values)
    return results


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        # Other processes' load when the section started: on a shared machine it explains noisy timings.
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
