"""Sharded extraction on a 2-worker Dask ``LocalCluster`` (processes, one thread each):
bit-identical to one process, resumed per shard after a killed worker, one writer a shard."""

from __future__ import annotations

import logging
from pathlib import Path

import feature_fakes
import numpy as np
import pytest
from feature_fakes import LoggingEncoder, make_corpus, read_log

from xmr_utils.core.errors import XmrError
from xmr_utils.core.features import cache_paths, image_features, read_manifest, shards
from xmr_utils.core.features.cluster import dask_client
from xmr_utils.core.features.encoding import ExtractOptions, image_expected
from xmr_utils.core.features.shards import encode_shard, shard_ranges, shard_tasks

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    import cloudpickle

    cloudpickle.register_pickle_by_value(feature_fakes)  # the workers cannot import it
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


def test_shard_ranges_fall_on_chunk_boundaries() -> None:
    assert shard_ranges(7, 2, 8) == [(0, 2), (2, 4), (4, 6), (6, 7)]
    assert shard_ranges(16, 1, 8) == [(i, i + 2) for i in range(0, 16, 2)]
    assert shard_ranges(7000, 512, 8) == [(s, min(7000, s + 1024)) for s in range(0, 7000, 1024)]
    for n, chunk, most in ((1, 5, 4), (100, 7, 3), (513, 512, 16)):
        ranges = shard_ranges(n, chunk, most)
        assert len(ranges) <= most
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        assert all(start % chunk == 0 for start, _ in ranges)


def test_sharded_extraction_is_bit_identical_to_one_process(client, tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data")
    enc = {"log": tmp_path / "calls.log", "dim": 64}
    serial = image_features(
        corpus, "fake", tmp_path / "serial", encoder=LoggingEncoder(**enc), chunk_size=2
    )
    sharded = image_features(
        corpus,
        "fake",
        tmp_path / "sharded",
        encoder=LoggingEncoder(**enc),
        chunk_size=2,
        client=client,
        progress=False,
    )
    assert sharded.dtype == serial.dtype and np.array_equal(sharded, serial)
    one = read_manifest(cache_paths(tmp_path / "serial", corpus, "fake:pool").manifest)
    many = cache_paths(tmp_path / "sharded", corpus, "fake:pool")
    manifest = read_manifest(many.manifest)
    assert manifest["checksums"] == one["checksums"]  # the same bytes
    assert manifest["sharded"] == {"shards": 4}  # one per chunk
    assert not many.shard_dir.exists()  # shards removed once assembled


def test_real_encoder_sharded_equals_one_process_at_equal_threads(client, tmp_path: Path) -> None:
    """efficientnet_lite0, built on each worker from its spec: the same bytes as this process
    at one torch thread (Dask workers run with OMP_NUM_THREADS=1)."""
    import torch

    corpus = make_corpus(tmp_path / "data", n_images=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = image_features(
            corpus, "efficientnet_lite0", tmp_path / "serial", chunk_size=2, progress=False
        )
    finally:
        torch.set_num_threads(threads)
    sharded = image_features(
        corpus, "efficientnet_lite0", tmp_path / "sharded", chunk_size=2, client=client
    )
    assert np.array_equal(sharded, serial)


def test_killed_worker_resumes_its_shard(
    client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shards, "MAX_SHARDS", 8)
    corpus = make_corpus(tmp_path / "data", n_images=16)  # 8 shards of 2 chunks
    log, marker = tmp_path / "calls.log", tmp_path / "killed"
    killer = LoggingEncoder(log, kill_on="im05.jpg", kill_marker=marker)
    feats = image_features(
        corpus, "fake", tmp_path / "cache", encoder=killer, chunk_size=1, client=client
    )
    assert marker.exists()  # a worker died mid-shard [4, 6), after encoding im04
    calls = read_log(log)
    names = sorted(n for _, batch in calls for n in batch)
    assert names == [p.name for p in corpus.image_files]  # nothing encoded twice
    pid_of = {batch[0]: pid for pid, batch in calls}
    assert pid_of["im04.jpg"] == int(marker.read_text())  # the killed worker's chunk was kept
    assert pid_of["im05.jpg"] != pid_of["im04.jpg"]  # and the rest resumed elsewhere
    reference = image_features(
        corpus, "fake", tmp_path / "ref", encoder=LoggingEncoder(tmp_path / "r.log"), chunk_size=1
    )
    assert np.array_equal(feats, reference)
    client.wait_for_workers(2, timeout=120)  # the killed worker is back for the next test


def test_one_shard_run_twice_at_once_has_one_writer(client, tmp_path: Path) -> None:
    """Dask may run a task twice (a worker presumed dead still runs): the shard lock lets
    one write and the other wait and reuse."""
    corpus = make_corpus(tmp_path / "data", n_images=4)
    enc = LoggingEncoder(tmp_path / "calls.log", sleep_s=0.3)
    paths = cache_paths(tmp_path / "cache", corpus, "fake:pool")
    run = ExtractOptions(chunk_size=1)
    (task,) = shard_tasks(
        paths, image_expected(corpus, enc), corpus.image_files, run, ("fake", ()), 1
    )
    client.wait_for_workers(2, timeout=120)  # (one may still be restarting after a kill)
    futures = [
        client.submit(encode_shard, task, enc, pure=False, workers=[w])
        for w in list(client.nthreads())[:2]
    ]
    first, second = client.gather(futures)
    assert first["checksums"] == second["checksums"]
    calls = read_log(tmp_path / "calls.log")
    assert sorted(n for _, batch in calls for n in batch) == [p.name for p in corpus.image_files]


def test_failed_shard_keeps_the_finished_ones(client, tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data", n_images=8)
    log = tmp_path / "calls.log"
    failing = LoggingEncoder(log, fail_on="im05.jpg")
    with pytest.raises(XmrError, match=r"1 of 8 shards of fake:pool failed .*shard 000000005"):
        image_features(
            corpus, "fake", tmp_path / "cache", encoder=failing, chunk_size=1, client=client
        )
    before = len(read_log(log))
    assert before == 7
    feats = image_features(
        corpus, "fake", tmp_path / "cache", encoder=LoggingEncoder(log), chunk_size=1,
        client=client,
    )  # fmt: skip
    assert [batch for _, batch in read_log(log)[before:]] == [["im05.jpg"]]  # only that one
    reference = image_features(
        corpus, "fake", tmp_path / "ref", encoder=LoggingEncoder(tmp_path / "r.log")
    )
    assert np.array_equal(feats, reference)


def test_dask_client_from_a_string(tmp_path: Path) -> None:
    with dask_client("") as none:
        assert none is None
    for bad in ("local:0", "local:x", "local"):
        with pytest.raises(XmrError, match="accepted"), dask_client(bad):
            pass
    with pytest.raises(XmrError, match="does not exist"), dask_client(str(tmp_path / "s.json")):
        pass
