"""Concurrent writers of one cache entry, as real processes: one writes, the other waits and
reuses; a ``.partial`` file is resumed only once its writer is dead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from feature_fakes import LoggingEncoder, make_corpus, read_log

from xmr_utils.core.features import cache_paths, image_features

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]

CHILD = textwrap.dedent(
    """
    import logging, sys
    sys.path.insert(0, {here!r})
    import numpy as np
    from feature_fakes import LoggingEncoder, make_corpus
    from xmr_utils.core.features import image_features

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    corpus = make_corpus(__import__("pathlib").Path({data!r}))
    enc = LoggingEncoder({log!r}, sleep_s={sleep}, hold_on="im03.jpg", release={release!r})
    feats = image_features(corpus, "fake", {cache!r}, encoder=enc, chunk_size=1, progress=False)
    np.save({out!r}, feats)
    print("dask imported:", "distributed" in sys.modules)
    """
)


def start_child(
    tmp_path: Path, name: str, sleep: float, release: Path | None = None
) -> subprocess.Popen:
    """A process extracting ``fake`` features of ``tmp_path/data`` into ``tmp_path/cache``;
    with ``release``, it pauses before im03 (its fourth chunk) until that file exists."""
    code = CHILD.format(
        here=str(HERE),
        data=str(tmp_path / "data"),
        log=str(tmp_path / "calls.log"),
        sleep=sleep,
        cache=str(tmp_path / "cache"),
        out=str(tmp_path / f"{name}.npy"),
        release=str(release) if release else None,
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_calls(log: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``log`` has ``n`` calls (the writer has finished ``n`` chunks)."""
    deadline = time.monotonic() + timeout
    while len(read_log(log)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the writer made no progress"
        time.sleep(0.05)


def test_second_writer_waits_for_the_first_and_reuses_its_result(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data")
    release = tmp_path / "release"
    first = start_child(tmp_path, "first", sleep=0.0, release=release)
    wait_for_calls(tmp_path / "calls.log", 3, first)  # a live .partial file is on disk now
    second = start_child(tmp_path, "second", sleep=0.0)
    try:
        waiting = ""
        while "waiting for it to finish" not in waiting:  # the second blocks on the lock ...
            line = second.stderr.readline()
            assert line, f"the second writer ended without waiting: {second.communicate()}"
            waiting += line
        release.touch()  # ... until the first finishes
        out1, err1 = first.communicate(timeout=300)
        out2, err2 = second.communicate(timeout=300)
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2  # no FileNotFoundError
    assert f"being written by pid {first.pid}" in waiting
    calls = read_log(tmp_path / "calls.log")
    assert sorted(n for _, names in calls for n in names) == [p.name for p in corpus.image_files]
    assert {pid for pid, _ in calls} == {first.pid}  # the second encoded nothing
    np.testing.assert_array_equal(np.load(tmp_path / "first.npy"), np.load(tmp_path / "second.npy"))
    assert "dask imported: False" in out1  # Dask is imported only when a client is given


def test_partial_of_a_killed_writer_is_resumed(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data")
    writer = start_child(tmp_path, "killed", sleep=0.4)
    wait_for_calls(tmp_path / "calls.log", 3, writer)
    os.kill(writer.pid, signal.SIGKILL)
    writer.communicate(timeout=60)
    paths = cache_paths(tmp_path / "cache", corpus, "fake:pool")
    assert paths.array(None, partial=True).exists() and not paths.features.exists()
    done = json.loads(paths.progress.read_text())["done"]  # chunks recorded as finished

    enc = LoggingEncoder(tmp_path / "calls.log")
    feats = image_features(
        corpus, "fake", tmp_path / "cache", encoder=enc, chunk_size=1, progress=False
    )
    calls = read_log(tmp_path / "calls.log")
    resumed = [names for pid, names in calls if pid == os.getpid()]
    assert done >= 2  # (a chunk encoded but not yet recorded when killed is encoded again)
    assert resumed == [[p.name] for p in corpus.image_files[done:]]  # the rest only
    reference = image_features(
        corpus, "fake", tmp_path / "ref", encoder=LoggingEncoder(tmp_path / "r.log"), progress=False
    )
    np.testing.assert_array_equal(feats, reference)
