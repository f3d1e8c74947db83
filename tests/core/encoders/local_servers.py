"""HTTP servers on 127.0.0.1 that stand in for download.pytorch.org and the Hugging Face Hub,
so the download switch is tested for real (sockets, headers, caches) without the network.

* :func:`serve_files` serves a folder (``GET /<name>``), like a plain file mirror.
* :func:`serve_hub` answers the Hub's file protocol for a few repositories: ``HEAD``/``GET
  /<repo>/resolve/<revision>/<file>`` with the ``X-Repo-Commit`` and ``ETag`` headers that
  ``huggingface_hub`` reads, ``/api/models/<repo>[/revision/<rev>]`` with the file list, and
  404 with ``X-Error-Code: EntryNotFound`` for a missing file, as the Hub does.

Every request path is recorded in ``server.requests``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[str]
    files: Path
    repos: Mapping[str, Path]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        """Keep test output quiet."""

    def _send(self, code: int, body: bytes, headers: Mapping[str, str] = ()) -> None:
        self.send_response(code)
        for key, value in dict(headers).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _file(self, path: Path, extra: Mapping[str, str] = ()) -> None:
        if not path.is_file():
            self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"})
            return
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest() + '"'
        self._send(200, body, {"ETag": etag, **dict(extra)})

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        path = unquote(urlparse(self.path).path)
        self.server.requests.append(f"{self.command} {path}")
        if getattr(self.server, "repos", None) is None:
            self._file(self.server.files / path.lstrip("/"))
            return
        if path.startswith("/api/models/"):
            self._api(path[len("/api/models/") :])
            return
        for repo, folder in self.server.repos.items():
            prefix = f"/{repo}/resolve/"
            if path.startswith(prefix):
                _, _, name = path[len(prefix) :].partition("/")
                self._file(folder / name, {"X-Repo-Commit": COMMIT})
                return
        self._send(404, b"repository not found", {"X-Error-Code": "RepoNotFound"})

    def _api(self, rest: str) -> None:
        for repo, folder in self.server.repos.items():
            if rest.startswith(repo + "/tree/"):
                self._tree(folder, rest[len(repo + "/tree/") :].partition("/")[2])
                return
            if rest == repo or rest.startswith(repo + "/"):
                siblings = [
                    {"rfilename": p.relative_to(folder).as_posix()}
                    for p in sorted(folder.rglob("*"))
                    if p.is_file()
                ]
                body = json.dumps({"id": repo, "sha": COMMIT, "siblings": siblings}).encode()
                self._send(200, body, {"Content-Type": "application/json"})
                return
        self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})

    def _tree(self, folder: Path, sub: str) -> None:
        where = folder / sub
        if not where.is_dir():
            self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"})
            return
        entries = []
        for p in sorted(where.iterdir()):
            entry = {"path": p.relative_to(folder).as_posix(), "oid": COMMIT}
            if p.is_file():
                entries.append({**entry, "type": "file", "size": p.stat().st_size})
            else:
                entries.append({**entry, "type": "directory"})
        self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"})


@contextmanager
def _running(server: _Server) -> Iterator[_Server]:
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def url_of(server: _Server) -> str:
    """``http://127.0.0.1:<port>`` of a running server."""
    return f"http://127.0.0.1:{server.server_address[1]}"


@contextmanager
def serve_files(folder: Path) -> Iterator[_Server]:
    """Serve the files of ``folder`` at ``url_of(server)/<name>``."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.files = Path(folder)
    server.repos = None  # type: ignore[assignment]
    with _running(server) as running:
        yield running


@contextmanager
def serve_hub(repos: Mapping[str, Path]) -> Iterator[_Server]:
    """Serve ``{repo id: folder of its files}`` with the Hub's file protocol."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.repos = {k: Path(v) for k, v in repos.items()}
    with _running(server) as running:
        yield running


def free_port_url() -> str:
    """A ``http://127.0.0.1:<port>`` where nothing listens (the 'no network' case)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
