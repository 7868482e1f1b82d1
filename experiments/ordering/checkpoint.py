"""Checkpoints of a group's training state, so that a long run survives being killed.

A checkpoint holds the training state (parameters and optimizer states of every seed, as arrays) and a
JSON-ready record of the host-side state (steps done, the curve so far, the group's fingerprint). The data
of a chunk and the dropout keys of a step are functions of (seed, chunk, step) only, so a run restored from
the checkpoint at step ``s`` continues exactly as the uninterrupted run did after step ``s``: its metrics are
bitwise equal. Saving is atomic (Orbax writes a temporary directory and renames it), so a kill during a save
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import jax

__all__ = ["GroupCheckpoints", "json_safe"]


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
    """The checkpoints of one group in ``directory`` (only the latest is kept).

    Args:
      directory: where the group's checkpoints live (created on the first save).
      fingerprint: the group's fingerprint; a checkpoint of another fingerprint is never restored.
    """

    def __init__(self, directory: Path, fingerprint: str):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
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

    def save(self, step: int, state: Any, record: dict[str, Any]) -> None:
        """Saves ``state`` (a pytree of arrays) and ``record`` (JSON-ready) as the checkpoint of ``step``."""
        import orbax.checkpoint as ocp

        meta = json_safe({**record, "fingerprint": self.fingerprint, "step": step})
        self._open().save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )

    def restore(self, like: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """The latest checkpoint as ``(step, state, record)``, or ``None`` if there is none.

        Args:
          like: a pytree with the structure, shapes, dtypes and shardings of the state (e.g. the initial
            state): the restored arrays are placed like it.

        Raises:
          ValueError: if the checkpoint was written for another fingerprint (another config), or cannot be
            read; the message names the directory.
        """
        if not self.directory.exists():
            return None
        import orbax.checkpoint as ocp

        manager = self._open()
        step = manager.latest_step()
        if step is None:
            return None
        try:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as error:  # Orbax raises several types for a damaged directory
            raise ValueError(f"checkpoint {self.directory / str(step)} cannot be read: {error}") from error
        if meta.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"checkpoint {self.directory / str(step)} belongs to another config (fingerprint "
                f"{meta.get('fingerprint')!r}, expected {self.fingerprint!r})"
            )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as error:
            raise ValueError(f"checkpoint {self.directory / str(step)} cannot be read: {error}") from error
        return step, restored["state"], meta

    def remove(self) -> None:
        """Deletes every checkpoint of the group (once its results are written)."""
        import shutil

        if self._manager is not None:
            self._manager.close()
            self._manager = None
        shutil.rmtree(self.directory, ignore_errors=True)
