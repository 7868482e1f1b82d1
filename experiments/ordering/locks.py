"""Locks of a work directory, so that two runs never train or write the same groups at once.

Each group has a lock file, ``WORKDIR/locks/<group>.lock``, held (``flock``, exclusive, never waited for) by
the run that trains or reads it. A plain run and ``--merge`` hold every group's lock, so they exclude any
other run of the directory; ``--shard`` runs hold only their own groups' locks, so the shards of an array job
run side by side. A lock file names its holder (process id, host, start time, command) while it is held; a
run that cannot take a lock stops with `WorkdirBusy`, naming that holder. The operating system releases a
lock when its process ends, however it ends, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["WorkdirBusy", "check_workdir", "hold", "remove_stale_temporaries"]


class WorkdirBusy(ValueError):
    """Another run holds a lock of the work directory."""


def check_workdir(workdir: Path) -> None:
    """Checks that ``workdir`` is, or can be created as, a writable directory; writes nothing.

    Raises:
      ValueError: naming the path and what is wrong with it.
    """
    workdir = Path(workdir)
    if workdir.exists():
        if not workdir.is_dir():
            raise ValueError(
                f"run(workdir={str(workdir)!r}): exists and is not a directory; choose another --workdir"
            )
        if not os.access(workdir, os.W_OK | os.X_OK):
            raise ValueError(
                f"run(workdir={str(workdir)!r}): the directory is not writable; choose another --workdir"
            )
        return
    parent = workdir.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(
            f"run(workdir={str(workdir)!r}): cannot be created, {str(parent)!r} is not a directory; choose "
            "another --workdir"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"run(workdir={str(workdir)!r}): cannot be created, {str(parent)!r} is not writable; choose "
            "another --workdir"
        )


@contextlib.contextmanager
def hold(workdir: Path, groups: Iterable[str], *, command: str) -> Iterator[None]:
    """Holds the locks of ``groups`` in ``workdir`` for the ``with`` block.

    Args:
      workdir: the work directory (created if needed).
      groups: group names.
      command: the holder's command line, written into the lock files for whoever finds them held.

    Raises:
      WorkdirBusy: if another process holds one of the locks (nothing is held then); the message names the
        holder and the lock file.
    """
    directory = Path(workdir) / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    holder = (
        f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: {command}"
    )
    with contextlib.ExitStack() as stack:
        for name in groups:
            path = directory / f"{name}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            stack.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
                raise WorkdirBusy(
                    f"run(workdir={str(workdir)!r}): group {name} is in use by {other} (lock {path}); wait for "
                    "that run to end, or choose another --workdir"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
            stack.callback(os.ftruncate, fd, 0)  # released: no holder named (runs before the close)
        yield


def remove_stale_temporaries(directories: Iterable[Path], patterns: Iterable[str]) -> list[Path]:
    """Deletes the temporary files and directories an interrupted run left (files written through a temporary
    name, ``.NAME.tmpPID``, and Orbax's ``*.orbax-checkpoint-tmp*`` directories), matching ``patterns`` in
    ``directories``; only call it while holding the locks of what they belong to. Returns what it removed."""
    removed = []
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            continue
        for pattern in patterns:
            for path in sorted(directory.glob(pattern)):
                if path.is_dir():
                    import shutil

                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed
