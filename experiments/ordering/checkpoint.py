"""Checkpoints of a group's training state, so that a long run survives being killed.

A checkpoint holds the training state (parameters and optimizer states of every seed, as arrays) and a
JSON-ready record of the host-side state (steps done, the curve so far, the group's fingerprint). The data
of a chunk and the dropout keys of a step are functions of (seed, chunk, step) only, so a run restored from
the checkpoint at step ``s`` continues exactly as the uninterrupted run did after step ``s``: its metrics are
bitwise equal. Saving is atomic (Orbax writes a temporary directory and renames it), so a kill during a save
leaves the previous checkpoint intact.

Every checkpoint carries a content hash: ``<step>.sha256.json`` beside it lists the SHA-256 of each of its
files, written once the save is complete. Before a checkpoint is restored its files are hashed again; one
that differs, is missing, or has no hash (a save cut short) is named on stderr, set aside in
``<directory>.corrupt/`` for inspection, and the group resumes from the previous checkpoint (the last two
are kept) or, without one, retrains from the start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
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
    to ``directory`` with its content hash (the last two checkpoints are kept). After a kill, `resume`
    restores the latest checkpoint whose files match their hashes and rewrites the log up to it: at most
    ``every`` steps are lost (``2 * every`` if the latest checkpoint is damaged).

    Args:
      directory: the group's checkpoint directory (created on the first save).
      fingerprint: the group's fingerprint; a checkpoint of another fingerprint is never restored.
      every: steps between checkpoints (a multiple of the check interval; 0: no checkpoints).
      log_path: the group's training log (JSON lines), or ``None``.
    """

    #: Checkpoints kept: the latest and the one before it, to fall back on if the latest is damaged.
    KEEP = 2

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
                options=ocp.CheckpointManagerOptions(max_to_keep=self.KEEP, enable_async_checkpointing=False),
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
        """Saves ``state`` (a pytree of arrays) and ``record`` (JSON-ready) as the checkpoint of ``step``, then
        its content hash."""
        import orbax.checkpoint as ocp

        meta = json_safe({**record, "fingerprint": self.fingerprint, "step": step})
        manager = self._open()
        manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        from experiments.ordering.summary import atomic_write

        hashes = {"step": step, "files": _file_hashes(self.directory / str(step))}
        atomic_write(self._hash_path(step), json.dumps(hashes, indent=1))
        kept = {str(s) for s in manager.all_steps()}
        for path in self.directory.glob("*.sha256.json"):  # those of checkpoints Orbax has deleted
            if path.name.split(".")[0] not in kept:
                path.unlink(missing_ok=True)

    def _hash_path(self, step: int) -> Path:
        return self.directory / f"{step}.sha256.json"

    def verify(self, step: int) -> str | None:
        """What is wrong with the checkpoint of ``step`` (naming the file), or ``None`` if every file matches
        its recorded hash."""
        where = self.directory / str(step)
        try:
            recorded = json.loads(self._hash_path(step).read_text())["files"]
        except FileNotFoundError:
            return f"has no content hash ({self._hash_path(step).name} is missing: a save cut short)"
        except (ValueError, KeyError, TypeError) as error:
            return f"has a damaged content hash file {self._hash_path(step)} ({error})"
        found = _file_hashes(where)
        for name in sorted(set(recorded) | set(found)):
            if name not in found:
                return f"lacks its file {where / name}"
            if name not in recorded:
                return f"has a file its hash does not list, {where / name}"
            if found[name] != recorded[name]:
                return f"has a damaged file {where / name} (its SHA-256 differs from the one recorded at save)"
        return None

    def resume(self, like: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """The latest intact checkpoint as ``(step, state, record)``, or ``None`` (and an empty log) if there is
        none.

        A damaged checkpoint (`verify`) is named on stderr and set aside in ``<directory>.corrupt/``; the
        previous one is tried next.

        Args:
          like: a pytree with the structure, shapes, dtypes and shardings of the state (e.g. the initial
            state): the restored arrays are placed like it.

        Raises:
          ValueError: if the checkpoint was written for another fingerprint (another config); the message
            names the directory.
        """
        restored = self._restore(like) if self.directory.exists() else None
        if restored is None:
            self._write_log({"step": []}, range(0), "w")
        else:
            curve = restored[2]["curve"]
            self._write_log(curve, range(len(curve["step"])), "w")
        return restored

    def _restore(self, like: Any) -> tuple[int, Any, dict[str, Any]] | None:
        while True:
            steps = sorted(self._open().all_steps(), reverse=True)
            if not steps:
                return None
            step = steps[0]
            problem = self.verify(step)
            if problem is None:
                try:
                    return self._restore_step(step, like)
                except _Unreadable as error:
                    problem = str(error)
            aside = self._set_aside(step)
            then = (
                f"resuming from the checkpoint of step {steps[1]}"
                if len(steps) > 1
                else "retraining the group from the start"
            )
            print(
                f"checkpoint {self.directory / str(step)} {problem}; set aside as {aside}; {then}",
                file=sys.stderr,
                flush=True,
            )

    def _restore_step(self, step: int, like: Any) -> tuple[int, Any, dict[str, Any]]:
        import orbax.checkpoint as ocp

        manager = self._open()
        where = self.directory / str(step)
        try:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as error:  # Orbax raises several types for a damaged directory
            raise _Unreadable(f"cannot be read: {where / 'meta'} ({type(error).__name__}: {error})") from error
        if meta.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"checkpoint {where} belongs to another config (fingerprint {meta.get('fingerprint')!r}, "
                f"expected {self.fingerprint!r}); delete it or choose another --workdir"
            )
        try:
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
            state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as error:
            raise _Unreadable(f"cannot be read: {where / 'state'} ({type(error).__name__}: {error})") from error
        return step, state["state"], meta

    def _set_aside(self, step: int) -> Path:
        """Moves the checkpoint of ``step`` and its hash out of the manager's directory; returns where."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None
        aside = self.directory.with_name(self.directory.name + ".corrupt")
        aside.mkdir(parents=True, exist_ok=True)
        target = aside / str(step)
        number = 1
        while target.exists():
            number += 1
            target = aside / f"{step}-{number}"
        os.replace(self.directory / str(step), target)
        if self._hash_path(step).exists():
            os.replace(self._hash_path(step), target.with_name(target.name + ".sha256.json"))
        return target

    def remove(self) -> None:
        """Deletes the group's checkpoints (once its results are written)."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None
        shutil.rmtree(self.directory, ignore_errors=True)


class _Unreadable(Exception):
    """A checkpoint whose files match their hashes but that Orbax cannot read."""


def _file_hashes(directory: Path) -> dict[str, str]:
    """The SHA-256 of every file under ``directory``, keyed by its path relative to it."""
    out = {}
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
        out[path.relative_to(directory).as_posix()] = digest.hexdigest()
    return out
