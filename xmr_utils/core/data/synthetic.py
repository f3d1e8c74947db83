"""Offline synthetic dataset: drawn scenes of coloured shapes with informative captions.

Each 224x224 JPEG shows 1-3 objects (8 colours x 6 shapes x 2 sizes, in distinct cells
of a 3x3 grid) on one of 6 background colours with one of 5 textures. Each image gets 5
different captions from 8 templates that name colours, shapes, sizes, positions, the
background and spatial relations ("a small red triangle to the left of a large blue
circle"), so a text encoder can tell scenes apart and retrieval is learnable.

The output uses the Kaggle Flickr30k layout, so the ordinary reader reads it::

    DIR/flickr30k_images/<000000>.jpg
    DIR/results.csv            image_name| comment_number| comment
    DIR/synthetic.json         generator, version, n_images, seed

Output is a pure function of ``(n_images, seed, GENERATOR_VERSION)``: a rerun writes
byte-identical files. Generation writes into a temporary sibling folder that is renamed
into place at the end, so an interrupted run never leaves a folder that looks complete.

Command line: ``python -m xmr_utils.core.data.make_synthetic --out DIR --images N --seed S``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmr_utils.core.errors import XmrError

# The generator's name as recorded in every synthetic.json: an identifier, kept as first written
# (the module has since moved under xmr_utils.core), so existing datasets stay valid.
GENERATOR = "xmr_utils.data.synthetic"
GENERATOR_VERSION = 2
IMAGE_SIZE = 224
CAPTIONS_PER_IMAGE = 5
IMAGE_FOLDER = "flickr30k_images"
CAPTION_FILE = "results.csv"
MARKER_FILE = "synthetic.json"
JPEG_QUALITY = 90

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 60),
    "blue": (35, 75, 215),
    "yellow": (240, 215, 40),
    "purple": (135, 55, 175),
    "orange": (245, 135, 20),
    "white": (248, 248, 248),
    "black": (18, 18, 18),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "beige": (222, 205, 165),
    "pink": (238, 170, 195),
    "brown": (115, 78, 48),
    "teal": (40, 128, 128),
    "navy": (28, 36, 88),
}
TEXTURES: tuple[str, ...] = ("plain", "striped", "dotted", "checkered", "speckled")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "hexagon")
SIZES: dict[str, int] = {"small": 17, "large": 34}  # half-extent in pixels
ROWS: tuple[str, ...] = ("top", "middle", "bottom")
COLUMNS: tuple[str, ...] = ("left", "center", "right")
MIN_CONTRAST = 110  # minimum L1 distance between object and background colours
COUNT_WORDS: tuple[str, ...] = ("", "one", "two", "three")
_MARKER_KEYS: tuple[str, ...] = ("generator", "version", "n_images", "seed")


@dataclass(frozen=True)
class SceneObject:
    """One drawn object: attributes, grid cell and pixel centre."""

    colour: str
    shape: str
    size: str
    row: int
    column: int
    x: int
    y: int

    @property
    def noun(self) -> str:
        """``"small red triangle"``."""
        return f"{self.size} {self.colour} {self.shape}"

    @property
    def place(self) -> str:
        """Where the object is: ``"in the top left corner"``, ``"in the center"``."""
        row, column = ROWS[self.row], COLUMNS[self.column]
        if row == "middle" and column == "center":
            return "in the center"
        if row == "middle":
            return f"on the {column}"
        if column == "center":
            return f"at the {row}"
        return f"in the {row} {column} corner"


@dataclass(frozen=True)
class Scene:
    """One image: background colour and texture and 1-3 objects (in drawing order)."""

    background: str
    texture: str
    objects: tuple[SceneObject, ...]

    @property
    def backdrop(self) -> str:
        """``"striped grey background"`` (``"plain grey background"`` without texture)."""
        return f"{self.texture} {self.background} background"


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw a random scene: background, texture, 1-3 objects in distinct grid cells."""
    background = str(rng.choice(list(BACKGROUNDS)))
    texture = str(rng.choice(TEXTURES))
    bg_rgb = np.array(BACKGROUNDS[background])
    colours = [
        c for c, rgb in COLOURS.items() if np.abs(np.array(rgb) - bg_rgb).sum() >= MIN_CONTRAST
    ]
    n_objects = int(rng.integers(1, 4))
    cells = rng.choice(9, size=n_objects, replace=False)
    cell_px = IMAGE_SIZE / 3
    objects = []
    for cell in cells:
        size = str(rng.choice(list(SIZES)))
        half = SIZES[size]
        row, column = divmod(int(cell), 3)
        jitter = rng.integers(-8, 9, size=2)
        x = int(np.clip((column + 0.5) * cell_px + jitter[0], half + 2, IMAGE_SIZE - half - 3))
        y = int(np.clip((row + 0.5) * cell_px + jitter[1], half + 2, IMAGE_SIZE - half - 3))
        objects.append(
            SceneObject(str(rng.choice(colours)), str(rng.choice(SHAPES)), size, row, column, x, y)
        )
    return Scene(background, texture, tuple(objects))


# ----------------------------------------------------------------------------- captions


def _a(noun: str) -> str:
    """``"a red star"``, ``"an orange star"``."""
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _join(items: Sequence[str]) -> str:
    """``"x"``, ``"x and y"``, ``"x, y and z"``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _relation(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` is relative to ``b``: left of / right of / above / below."""
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def _left_to_right(scene: Scene) -> list[SceneObject]:
    return sorted(scene.objects, key=lambda o: (o.x, o.y))


def _by_size(scene: Scene) -> list[SceneObject]:
    return sorted(scene.objects, key=lambda o: (o.size != "large", o.x))


def _t_listing(scene: Scene, rng: np.random.Generator) -> str:
    order = [scene.objects[i] for i in rng.permutation(len(scene.objects))]
    return f"{_join([_a(o.noun) for o in order])} on a {scene.backdrop}"


def _t_relation(scene: Scene, rng: np.random.Generator) -> str:
    objs = _left_to_right(scene)
    if len(objs) == 1:
        return f"{_a(objs[0].noun)} {objs[0].place}"
    text = f"{_a(objs[0].noun)} {_relation(objs[0], objs[1])} {_a(objs[1].noun)}"
    if len(objs) == 3:
        text += f", and {_a(objs[2].noun)} {_relation(objs[2], objs[1])} the {objs[1].shape}"
    return text


def _t_count(scene: Scene, rng: np.random.Generator) -> str:
    n = len(scene.objects)
    things = "a single object" if n == 1 else f"{COUNT_WORDS[n]} objects"
    names = [_a(f"{o.colour} {o.shape}") for o in _left_to_right(scene)]
    return f"{things} on a {scene.background} background: {_join(names)}"


def _t_places(scene: Scene, rng: np.random.Generator) -> str:
    return _join([f"{_a(o.colour + ' ' + o.shape)} {o.place}" for o in _by_size(scene)])


def _t_backdrop_first(scene: Scene, rng: np.random.Generator) -> str:
    texture = "" if scene.texture == "plain" else f", {scene.texture}"
    names = [_a(o.noun) for o in _by_size(scene)]
    return f"{scene.background}{texture} backdrop with {_join(names)}"


def _t_reverse_relation(scene: Scene, rng: np.random.Generator) -> str:
    objs = _left_to_right(scene)[::-1]
    if len(objs) == 1:
        return f"the {objs[0].shape} is {objs[0].size} and {objs[0].colour}, {objs[0].place}"
    text = f"the {objs[0].noun} is {_relation(objs[0], objs[1])} the {objs[1].noun}"
    if len(objs) == 3:
        text += f", the {objs[2].noun} is {_relation(objs[2], objs[0])} the {objs[0].shape}"
    return text


def _t_there_is(scene: Scene, rng: np.random.Generator) -> str:
    parts = [f"{_a(o.size + ' ' + o.shape)} in {o.colour} {o.place}" for o in scene.objects]
    return f"there is {_join(parts)}"


def _t_terse(scene: Scene, rng: np.random.Generator) -> str:
    names = [f"{o.colour} {o.shape}" for o in _by_size(scene)]
    return f"{', '.join(names)}; {scene.texture} {scene.background} background"


TEMPLATES: tuple[Callable[[Scene, np.random.Generator], str], ...] = (
    _t_listing,
    _t_relation,
    _t_count,
    _t_places,
    _t_backdrop_first,
    _t_reverse_relation,
    _t_there_is,
    _t_terse,
)


def scene_captions(scene: Scene, rng: np.random.Generator) -> tuple[str, ...]:
    """5 different captions of ``scene``, from 5 of the templates chosen at random."""
    captions: list[str] = []
    for t in rng.permutation(len(TEMPLATES)):
        text = TEMPLATES[t](scene, rng)
        text = text[0].upper() + text[1:] + " ."
        if text not in captions:
            captions.append(text)
        if len(captions) == CAPTIONS_PER_IMAGE:
            return tuple(captions)
    raise RuntimeError(f"templates gave fewer than {CAPTIONS_PER_IMAGE} distinct captions")


# ----------------------------------------------------------------------------- drawing


def _shade(rgb: tuple[int, int, int], delta: int) -> tuple[int, int, int]:
    r, g, b = (int(np.clip(c + delta, 0, 255)) for c in rgb)
    return r, g, b


def _polygon(shape: str, x: int, y: int, half: int) -> list[tuple[float, float]]:
    if shape == "square":
        h = half * 0.85
        return [(x - h, y - h), (x + h, y - h), (x + h, y + h), (x - h, y + h)]
    if shape == "diamond":
        return [(x, y - half), (x + half * 0.75, y), (x, y + half), (x - half * 0.75, y)]
    if shape == "triangle":
        return [(x, y - half), (x + half, y + half * 0.8), (x - half, y + half * 0.8)]
    if shape == "hexagon":
        angles = np.deg2rad(np.arange(6) * 60.0)
        return [(x + half * np.cos(a), y + half * np.sin(a)) for a in angles]
    if shape == "star":
        angles = np.deg2rad(np.arange(10) * 36.0 - 90.0)
        radii = np.where(np.arange(10) % 2 == 0, half, half * 0.45)
        return [(x + r * np.cos(a), y + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)]
    raise ValueError(f"no polygon for shape {shape!r}")


def render_scene(scene: Scene, rng: np.random.Generator):  # -> PIL.Image.Image
    """Draw ``scene`` as a 224x224 RGB PIL image (texture noise drawn from ``rng``)."""
    from PIL import Image, ImageDraw

    base = BACKGROUNDS[scene.background]
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), base)
    draw = ImageDraw.Draw(image)
    other = _shade(base, 28 if sum(base) < 384 else -28)
    if scene.texture == "striped":
        for offset in range(-IMAGE_SIZE, IMAGE_SIZE, 16):
            draw.line([(offset, 0), (offset + IMAGE_SIZE, IMAGE_SIZE)], fill=other, width=5)
    elif scene.texture == "dotted":
        for cy in range(8, IMAGE_SIZE, 18):
            for cx in range(8, IMAGE_SIZE, 18):
                draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=other)
    elif scene.texture == "checkered":
        for cy in range(0, IMAGE_SIZE, 28):
            for cx in range((cy // 28) % 2 * 28, IMAGE_SIZE, 56):
                draw.rectangle([cx, cy, cx + 27, cy + 27], fill=other)
    elif scene.texture == "speckled":
        pixels = np.asarray(image, dtype=np.int16)
        noise = rng.integers(-30, 31, size=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.int16)
        image = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        half = SIZES[obj.size]
        fill = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse([obj.x - half, obj.y - half, obj.x + half, obj.y + half], fill=fill)
        else:
            draw.polygon(_polygon(obj.shape, obj.x, obj.y, half), fill=fill)
    return image


# ----------------------------------------------------------------------------- writing


def image_name(index: int) -> str:
    """File name of image ``index``: ``000042.jpg``."""
    return f"{index:06d}.jpg"


def _check_args(n_images: int, seed: int) -> None:
    if not isinstance(n_images, int) or isinstance(n_images, bool) or n_images < 1:
        raise XmrError(f"n_images must be a whole number >= 1, got {n_images!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise XmrError(f"seed must be a whole number >= 0, got {seed!r}")


def _marker(n_images: int, seed: int) -> dict[str, object]:
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "n_images": n_images,
        "seed": seed,
    }


def is_complete(folder: Path, n_images: int, seed: int) -> bool:
    """True when ``folder`` holds a finished dataset of this generator version, size and seed."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
        n_files = sum(1 for e in os.scandir(folder / IMAGE_FOLDER) if e.name.endswith(".jpg"))
    except (OSError, ValueError):
        return False
    expected = _marker(n_images, seed)
    return (
        isinstance(marker, dict)
        and all(marker.get(k) == expected[k] for k in _MARKER_KEYS)
        and n_files == n_images
        and (folder / CAPTION_FILE).is_file()
    )


def _write(folder: Path, n_images: int, seed: int) -> None:
    images = folder / IMAGE_FOLDER
    images.mkdir(parents=True)
    rows = ["image_name| comment_number| comment"]
    for index in range(n_images):
        rng = np.random.default_rng([seed, index])
        scene = sample_scene(rng)
        captions = scene_captions(scene, rng)
        name = image_name(index)
        render_scene(scene, rng).save(images / name, format="JPEG", quality=JPEG_QUALITY)
        rows.extend(f"{name}| {k}| {caption}" for k, caption in enumerate(captions))
    (folder / CAPTION_FILE).write_text("\n".join(rows) + "\n", encoding="utf-8", newline="\n")
    marker = {**_marker(n_images, seed), "captions_per_image": CAPTIONS_PER_IMAGE}
    (folder / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _replaceable(folder: Path) -> bool:
    """True when ``folder`` holds nothing but what this generator writes (safe to replace)."""
    ours = {IMAGE_FOLDER, CAPTION_FILE, MARKER_FILE}
    return all(e.name in ours for e in os.scandir(folder))


def generate(out: Path, n_images: int, seed: int = 0) -> Path:
    """Write ``n_images`` synthetic scenes with 5 captions each into ``out``; return ``out``.

    ``out`` must not exist, be empty, or hold an earlier synthetic dataset (replaced);
    anything else raises XmrError rather than touching the user's files.
    """
    _check_args(n_images, seed)
    out = Path(out)
    if out.exists() and (not out.is_dir() or not _replaceable(out)):
        raise XmrError(
            f"{out} exists and holds files other than a synthetic dataset; "
            "choose another --out folder or remove it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    try:
        _write(partial, n_images, seed)
        if out.exists():
            stale = out.parent / f".{out.name}.stale-{os.getpid()}"
            out.rename(stale)
            shutil.rmtree(stale)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def ensure_synthetic(data_dir: Path, n_images: int, seed: int = 0) -> Path:
    """``data_dir/synthetic_<n_images>_s<seed>``, generated first if absent or incomplete."""
    _check_args(n_images, seed)
    folder = Path(data_dir) / f"synthetic_{n_images}_s{seed}"
    if is_complete(folder, n_images, seed):
        return folder
    try:
        return generate(folder, n_images, seed)
    except OSError:
        if is_complete(folder, n_images, seed):  # another process finished it first
            return folder
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: generate a synthetic dataset (``--out DIR --images N --seed S``)."""
    parser = argparse.ArgumentParser(
        prog="python -m xmr_utils.core.data.make_synthetic", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument("--images", type=int, default=600, help="number of images (600)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    args = parser.parse_args(argv)
    try:
        out = generate(args.out, args.images, args.seed)
    except XmrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.images} images x {CAPTIONS_PER_IMAGE} captions to {out}")
    return 0
