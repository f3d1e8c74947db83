"""JupyterLab's view of the project's files, as `make lab` serves them: a finished run is
read-only there.

A finished run (``finished.json`` present, see :mod:`xmr_utils.app.runs`) is sealed, but
JupyterLab would still save an executed copy opened from it — on Ctrl+S, and by itself every
two minutes once a cell has run. :class:`SealedRunsContentsManager` (set in
``configs/jupyter_lab_config.py``) reports every file inside a finished run as not writable,
so JupyterLab opens it read-only and offers "Save as…"; it refuses a save or a checkpoint
there with a message saying why, and lists no checkpoints there (jupyter_server would create
``.ipynb_checkpoints/`` just to list them). Everything else is JupyterLab's default contents
manager.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado import web

from xmr_utils.app.runs import FINISHED_FILE


def sealed_run_of(path: Path, root: Path) -> Path | None:
    """The finished run folder that holds ``path`` (below ``root``), or None.

    ``path`` itself counts when it is a folder: nothing may be created in a sealed run.
    """
    path, root = Path(path).resolve(), Path(root).resolve()
    for folder in (path, *path.parents):
        if folder == root or root not in folder.parents:
            return None
        if (folder / FINISHED_FILE).is_file():
            return folder
    return None


class SealedRunsContentsManager(AsyncLargeFileManager):
    """JupyterLab's default contents manager, with finished runs read-only."""

    def _sealed(self, path: str) -> Path | None:
        return sealed_run_of(Path(self._get_os_path(path.strip("/"))), Path(self.root_dir))

    async def get(
        self,
        path: str,
        content: bool = True,
        type: str | None = None,  # jupyter_server's names
        format: str | None = None,
        require_hash: bool = False,
    ) -> dict[str, Any]:
        model = await super().get(
            path, content=content, type=type, format=format, require_hash=require_hash
        )
        if self._sealed(path) is not None:
            model["writable"] = False
        return model

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        self._refuse_in_sealed(path)
        return await super().save(model, path)

    async def list_checkpoints(self, path: str) -> list[dict[str, Any]]:
        # jupyter_server creates .ipynb_checkpoints/ beside a file just to list its (none)
        if self._sealed(path) is not None:
            return []
        return await super().list_checkpoints(path)

    async def create_checkpoint(self, path: str) -> dict[str, Any]:
        self._refuse_in_sealed(path)
        return await super().create_checkpoint(path)

    def _refuse_in_sealed(self, path: str) -> None:
        run = self._sealed(path)
        if run is not None:
            raise web.HTTPError(
                403,
                f"{path} is inside the finished run {run.name}, which is read-only (a finished "
                "run is never overwritten); use File > Save As… to keep a copy elsewhere, "
                "e.g. in notebooks/",
            )
