"""Checkpoints of a group's training state, so that a long run survives being killed.

A checkpoint holds the training state (parameters and optimizer states of every seed, as arrays) and a
JSON-ready record of the host-side state (steps done, the curve so far, the group's fingerprint). The data
of a chunk and the dropout keys of a step are functions of (seed, chunk, step) only, so a run restored from
the checkpoint at step ``s`` continues exactly as the uninterrupted run did after step ``s``: its metrics are
bitwise equal. Saving is atomic (Orbax writes a temporary directory and renames it), so a kill during a save
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import jax

__all__ = ["DEFAULT_CHECKPOINT_STEPS", "GroupCheckpoints", "checkpoint_every", "json_safe"]


#: Default interval between checkpoints, in steps (rounded up to a multiple of the check interval).
DEFAULT_CHECKPOINT_STEPS = 1000


def checkpoint_every(config: Any, steps: int | None) -> int:
    """The checkpoint interval: ``steps`` (0: none), or by default the smallest multiple of the check
    interval that is at least `DEFAULT_CHECKPOINT_STEPS`.

    Raises:
      ValueError: if ``steps`` is negative or not a multiple of ``config.check_every``.
    """
    if steps is None:
        return -(-DEFAULT_CHECKPOINT_STEPS // config.check_every) * config.check_every
    if steps < 0 or steps % config.check_every:
        raise ValueError(
            f"checkpoint_every(steps={steps}): must be 0 (no checkpoints) or a positive multiple of the "
            f"check interval ({config.check_every} steps)"
        )
    return steps


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``, so that ``json.dumps`` writes valid JSON
    (JSON has no NaN or infinity; Python would write bare ``NaN``).

    >>> json_safe({"loss": [float("nan"), 0.5], "step": 3})
    {'loss': [None, 0.5], 'step': 3}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class GroupCheckpoints:
    """The training log and checkpoints of one group.

    Every chunk appends one JSON line (step, per-seed loss, accuracy and validation exact match) to
    ``log_path``, so that a reader can follow a long run; every ``every`` steps the training state is saved
    to ``directory`` (only the latest checkpoint is kept). After a kill, `resume` restores the latest
    checkpoint and rewrites the log up to it: at most ``every`` steps are lost.

    Args:
      directory: the group's checkpoint directory (created on the first save).
      fingerprint: the group's fingerprint; a checkpoint of another fingerprint is never restored.
      every: steps between checkpoints (a multiple of the check interval; 0: no checkpoints).
      log_path: the group's training log (JSON lines), or ``None``.
    """

    def __init__(self, directory: Path, fingerprint: str, *, every: int, log_path: Path | None = None):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.every = every
        self.log_path = None if log_path is None else Path(log_path)
        self._manager = None

    def _open(self):
        if self._manager is None:
            import orbax.checkpoint as ocp

            # Orbax logs every save at INFO level; a long run would drown its progress bar.
            logging.getLogger("absl").setLevel(logging.WARNING)
            self._manager = ocp.CheckpointManager(
                self.directory.absolute(),
                options=ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False),
            )
        return self._manager

    def _write_log(self, curve: dict[str, list], rows: range, mode: str) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, mode) as f:
            for i in rows:
                f.write(json.dumps(json_safe({name: values[i] for name, values in curve.items()})) + "\n")

    def after_chunk(self, step: int, state: Any, record: dict[str, Any], *, final: bool) -> None:
        """Logs the chunk that ended at ``step`` and saves a checkpoint if one is due.

        Args:
          step: steps done.
          state: the training state (a pytree of arrays).
          record: the host-side state, JSON-ready, with the curve so far under ``"curve"``.
          final: the group's last chunk (its results are written next: no checkpoint).
        """
        curve = record["curve"]
        self._write_log(curve, range(len(curve["step"]) - 1, len(curve["step"])), "a")
        if self.every and not final and step % self.every == 0:
            self.save(step, state, record)

    def save(self, step: int, state: Any, record: dict[str, Any]) -> None:
        """Saves ``state`` (a pytree of arrays) and ``record`` (JSON-ready) as the checkpoint of ``step``."""
        import orbax.checkpoint as ocp

        meta = json_safe({**record, "fingerprint": self.fingerprint, "step": step})
        self._open().save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )

    def resume(self, like: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """The latest checkpoint as ``(step, state, record)``, or ``None`` (and an empty log) if there is none.

        Args:
          like: a pytree with the structure, shapes, dtypes and shardings of the state (e.g. the initial
            state): the restored arrays are placed like it.

        Raises:
          ValueError: if the checkpoint was written for another fingerprint (another config), or cannot be
            read; the message names the directory.
        """
        restored = self._restore(like) if self.directory.exists() else None
        if restored is None:
            self._write_log({"step": []}, range(0), "w")
        else:
            curve = restored[2]["curve"]
            self._write_log(curve, range(len(curve["step"])), "w")
        return restored

    def _restore(self, like: Any) -> tuple[int, Any, dict[str, Any]] | None:
        import orbax.checkpoint as ocp

        manager = self._open()
        step = manager.latest_step()
        if step is None:
            return None
        where = self.directory / str(step)
        try:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            if meta.get("fingerprint") != self.fingerprint:
                raise ValueError(
                    f"checkpoint {where} belongs to another config (fingerprint {meta.get('fingerprint')!r}, "
                    f"expected {self.fingerprint!r}); delete it or choose another --workdir"
                )
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
            state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except ValueError:
            raise
        except Exception as error:  # Orbax raises several types for a damaged directory
            raise ValueError(f"checkpoint {where} cannot be read ({error}); delete it to retrain") from error
        return step, state["state"], meta

    def remove(self) -> None:
        """Deletes the group's checkpoints (once its results are written)."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None
        shutil.rmtree(self.directory, ignore_errors=True)
