"""Synthetic generator: determinism, captions that describe the picture, atomic writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmr_utils.core.data import ensure_synthetic, generate, load_corpus
from xmr_utils.core.data import synthetic as syn
from xmr_utils.core.errors import XmrError

N = 12


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    first = _files(generate(tmp_path / "a", N, seed=5))
    again = _files(generate(tmp_path / "b", N, seed=5))
    other = _files(generate(tmp_path / "c", N, seed=6))
    assert len(first) == N + 2
    assert first == again
    assert first["results.csv"] != other["results.csv"]
    assert first["flickr30k_images/000000.jpg"] != other["flickr30k_images/000000.jpg"]


def test_layout_marker_and_results_csv_format(tmp_path):
    root = generate(tmp_path / "s", N, seed=0)
    marker = json.loads((root / "synthetic.json").read_text())
    assert marker["n_images"] == N and marker["seed"] == 0
    assert marker["version"] == syn.GENERATOR_VERSION
    lines = (root / "results.csv").read_text().splitlines()
    assert lines[0] == "image_name| comment_number| comment"
    assert lines[1].startswith("000000.jpg| 0| ")
    assert len(lines) == 1 + 5 * N
    with Image.open(root / "flickr30k_images" / "000003.jpg") as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (224, 224), "RGB")


def test_five_distinct_captions_per_image_and_readable_by_load_corpus(tmp_path):
    corpus = load_corpus(generate(tmp_path / "s", 40, seed=2))
    assert corpus.n_images == 40 and corpus.n_captions == 200
    assert not corpus.events
    for i in range(corpus.n_images):
        captions = [corpus.captions[j] for j in np.flatnonzero(corpus.owner == i)]
        assert len(captions) == 5 and len(set(captions)) == 5


def test_captions_name_what_is_drawn_where(tmp_path):
    """Every object's colour and shape is in every caption, and its pixels have that colour."""
    root = generate(tmp_path / "s", 30, seed=4)
    corpus = load_corpus(root)
    for index in range(30):
        rng = np.random.default_rng([4, index])
        scene = syn.sample_scene(rng)
        captions = [corpus.captions[j] for j in np.flatnonzero(corpus.owner == index)]
        assert captions == [c for c in syn.scene_captions(scene, rng)]
        pixels = np.asarray(Image.open(root / "flickr30k_images" / syn.image_name(index)))
        for obj in scene.objects:
            assert all(obj.colour in c.lower() and obj.shape in c for c in captions)
            drawn = pixels[obj.y, obj.x].astype(int)
            assert np.abs(drawn - np.array(syn.COLOURS[obj.colour])).max() < 40, (index, obj)


def test_scene_vocabulary_is_varied(tmp_path):
    scenes = [syn.sample_scene(np.random.default_rng([0, i])) for i in range(300)]
    objects = [o for s in scenes for o in s.objects]
    assert {o.colour for o in objects} == set(syn.COLOURS)
    assert {o.shape for o in objects} == set(syn.SHAPES)
    assert {o.size for o in objects} == {"small", "large"}
    assert {s.texture for s in scenes} == set(syn.TEXTURES)
    assert {s.background for s in scenes} == set(syn.BACKGROUNDS)
    assert {len(s.objects) for s in scenes} == {1, 2, 3}


def test_ensure_synthetic_reuses_a_complete_folder_and_repairs_an_incomplete_one(tmp_path):
    folder = ensure_synthetic(tmp_path, N, seed=1)
    assert folder == tmp_path / f"synthetic_{N}_s1"
    stamp = (folder / "synthetic.json").stat().st_mtime_ns
    assert ensure_synthetic(tmp_path, N, seed=1) == folder
    assert (folder / "synthetic.json").stat().st_mtime_ns == stamp
    (folder / "flickr30k_images" / "000004.jpg").unlink()
    ensure_synthetic(tmp_path, N, seed=1)
    assert (folder / "flickr30k_images" / "000004.jpg").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_render = syn.render_scene

    def failing_render(scene, rng):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_render(scene, rng)

    monkeypatch.setattr(syn, "render_scene", failing_render)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(tmp_path, N, seed=0)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(syn, "render_scene", real_render)
    folder = ensure_synthetic(tmp_path, N, seed=0)
    assert syn.is_complete(folder, N, 0)


def test_generate_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(XmrError, match=r"mine exists and holds files other than a synthetic"):
        generate(tmp_path / "mine", N)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize(("n_images", "seed"), [(0, 0), (5, -1), (2.5, 0)])
def test_bad_arguments_raise_clear_errors(tmp_path, n_images, seed):
    with pytest.raises(XmrError, match=r"must be a whole number"):
        generate(tmp_path / "x", n_images, seed)


def test_command_line(tmp_path, capsys):
    assert syn.main(["--out", str(tmp_path / "cli"), "--images", "3", "--seed", "7"]) == 0
    assert "wrote 3 images" in capsys.readouterr().out
    assert json.loads((tmp_path / "cli" / "synthetic.json").read_text())["seed"] == 7
    assert syn.main(["--out", str(tmp_path / "bad"), "--images", "0"]) == 2
    assert "n_images must be" in capsys.readouterr().err


def test_module_runs_as_a_script_without_warnings(tmp_path):
    out = tmp_path / "script"
    command = [
        sys.executable,
        "-W",
        "error",
        "-m",
        "xmr_utils.core.data.make_synthetic",
        "--out",
        str(out),
    ]
    done = subprocess.run([*command, "--images", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert syn.is_complete(out, 2, 0)
