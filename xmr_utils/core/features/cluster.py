"""A Dask client from one string (notebook 01's ``scheduler`` parameter).

``""``: no Dask (nothing is imported); ``"local:N"``: a ``LocalCluster`` of N worker
processes with one thread each, closed afterwards; a path to a ``.json`` scheduler file
(what ``dask-scheduler --scheduler-file`` and ``dask-jobqueue`` write); otherwise a
scheduler address (``tcp://host:8786``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)
ACCEPTED = '"" (this process), "local:N" (N local workers), a scheduler file (.json) or address'


@contextmanager
def dask_client(scheduler: str) -> Iterator[Client | None]:
    """The client for ``scheduler`` (None for ``""``); a local cluster is closed on exit."""
    scheduler = str(scheduler).strip()
    if not scheduler:
        yield None
        return
    local = re.fullmatch(r"local:(\d+)", scheduler)
    if (scheduler == "local" or scheduler.startswith("local:")) and (
        local is None or int(local.group(1)) < 1
    ):
        raise XmrError(f"scheduler={scheduler!r} is not valid; accepted: {ACCEPTED}")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise XmrError(f"scheduler={scheduler!r} needs Dask: pip install -e '.[cluster]'") from None
    if local is not None:
        cluster = LocalCluster(n_workers=int(local.group(1)), threads_per_worker=1, processes=True)
        with cluster, Client(cluster) as client:
            log.warning("Dask dashboard: %s", client.dashboard_link)
            yield client
        return
    if scheduler.endswith(".json") and not Path(scheduler).is_file():
        raise XmrError(f"scheduler file {scheduler} does not exist; accepted: {ACCEPTED}")
    try:
        if scheduler.endswith(".json"):
            client = Client(scheduler_file=scheduler)
        else:
            client = Client(scheduler)
    except (OSError, ValueError) as exc:
        raise XmrError(
            f"cannot reach the Dask scheduler {scheduler!r} ({exc}); start it, or pass "
            f"another; accepted: {ACCEPTED}"
        ) from None
    with client:
        log.warning("Dask dashboard: %s", client.dashboard_link)
        yield client


__all__ = ["ACCEPTED", "dask_client"]
