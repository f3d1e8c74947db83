"""One writer per cache entry: a kernel file lock (``filelock``) beside the entry's files.

The lock is an ``flock`` on ``<stem>.lock``: the kernel drops it when its process dies, so
"the lock is held" means "its writer is alive". Whoever writes an entry (extracts it,
resumes its ``.partial`` file, adopts it, records its checksum, fits its text model) holds
the lock; a second process waits for it (logging who holds it) and then finds the finished
entry and reuses it. A ``.partial`` file is only ever opened under the lock, so a live
writer's file is never taken for an interrupted one.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from filelock import FileLock, Timeout

from xmr_utils.core.errors import XmrError
from xmr_utils.core.features.store import CachePaths

log = logging.getLogger(__name__)

#: Seconds between "still waiting" lines while another process holds a lock.
WAIT_LOG_S = 60.0


def _write_holder(fd: int) -> None:
    """Record who holds the lock (``pid@host since time``) in the lock file itself."""
    text = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode())


def holder(paths: CachePaths) -> str:
    """Who holds (or last held) the lock of ``paths``, as recorded in its lock file."""
    try:
        return paths.lock.read_text().strip() or "another process"
    except OSError:
        return "another process"


def _lock_of(paths: CachePaths) -> FileLock:
    paths.folder.mkdir(parents=True, exist_ok=True)
    # One object per path in this process: re-entering the lock (text_features fitting its
    # model under the lock it already holds) nests instead of waiting on itself.
    return FileLock(
        paths.lock, is_singleton=True, fallback_to_soft=False, on_acquired=_write_holder
    )


@contextmanager
def entry_lock(paths: CachePaths) -> Iterator[None]:
    """Hold the writer's lock of ``paths``, waiting (and saying so) while another holds it."""
    lock = _lock_of(paths)
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.warning(
                "%s is being written by %s; waiting for it to finish (then it is reused)",
                paths.features,
                holder(paths),
            )
            start = time.monotonic()
            while True:
                try:
                    lock.acquire(timeout=WAIT_LOG_S)
                    break
                except Timeout:
                    log.warning(
                        "still waiting for %s (%s) after %.0f s",
                        paths.lock,
                        holder(paths),
                        time.monotonic() - start,
                    )
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP):
            raise XmrError(
                f"the feature cache folder {paths.folder} is on a filesystem without file "
                "locks (flock); put features_dir on a local disk or a filesystem with locking"
            ) from None
        raise
    try:
        yield
    finally:
        lock.release()


__all__ = ["WAIT_LOG_S", "entry_lock", "holder"]
