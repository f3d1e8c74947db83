"""Where encoder weights come from, offline, and how they are identified.

Order of resolution for torchvision models: an explicit ``weights=PATH`` option, then the
torch hub cache ``$TORCH_HOME/hub/checkpoints/<file name of the weights enum url>``
(:func:`torch.hub.get_dir`). Hugging Face models: a local folder, then the HF cache with
``local_files_only=True``. Nothing here ever downloads; a missing file raises ONE
:class:`XmrError` naming the file, the folder to put it in and the bundled alternative.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:
    import torch

_FULL_HASH_LIMIT = 2 * 1024**3  # bigger files are identified by size + head + tail
_SAMPLE = 64 * 1024**2
_hash_memo: dict[tuple[str, int, int], str] = {}


def file_hash(path: Path, length: int = 12) -> str:
    """Short sha256 of a file (files over 2 GiB: of size, first and last 64 MiB).

    Memoised per (path, size, mtime) within the process, so a 500 MB checkpoint is hashed
    once per session.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _hash_memo:
        h = hashlib.sha256()
        with path.open("rb") as f:
            if stat.st_size <= _FULL_HASH_LIMIT:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
            else:
                h.update(str(stat.st_size).encode())
                h.update(f.read(_SAMPLE))
                f.seek(stat.st_size - _SAMPLE)
                h.update(f.read(_SAMPLE))
        _hash_memo[key] = h.hexdigest()
    return _hash_memo[key][:length]


def weights_id_of(path: Path) -> str:
    """``<file name>:<short sha256>`` of a weights file."""
    return f"{Path(path).name}:{file_hash(path)}"


def hub_checkpoint_dir() -> Path:
    """The folder torchvision caches checkpoints in: ``torch.hub.get_dir()/checkpoints``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def url_file_name(url: str) -> str:
    """The file name torch.hub stores a download of ``url`` under (its last path part)."""
    return os.path.basename(urlparse(url).path)


def resolve_torchvision_weights(
    url: str, explicit: str | os.PathLike[str] | None, encoder: str, alternative: str
) -> Path:
    """Path of the checkpoint for the torchvision weights at ``url``, never downloading.

    Args:
        url: ``<WeightsEnum member>.url``; its file name is what the hub cache holds.
        explicit: the ``weights=`` option, used when given (it must exist).
        encoder: encoder spec for the message, e.g. ``"vgg16"``.
        alternative: bundled encoder to suggest, e.g. ``"efficientnet_lite0"``.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise XmrError(
                f"weights file {path} (given as weights= for image encoder "
                f"{encoder!r}) does not exist; check the path"
            )
        return path
    name = url_file_name(url)
    folder = hub_checkpoint_dir()
    path = folder / name
    if path.is_file():
        return path
    raise XmrError(
        f"image encoder {encoder!r} needs the weights file {name} and it is not in {folder} "
        f"(offline, nothing is downloaded); put {name} (from {url}) into {folder}/, or pass "
        f"weights=PATH, or use image encoder {alternative!r}, which is bundled"
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a PyTorch checkpoint on the CPU (``weights_only``); bad files raise XmrError."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same fix
        raise XmrError(
            f"weights file {path} cannot be read as a PyTorch state dict "
            f"({type(exc).__name__}); replace it with a fresh copy"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise XmrError(
            f"weights file {path} holds a {type(state).__name__}, not a state dict; "
            "save it with torch.save(model.state_dict(), path)"
        )
    return state


def load_weights_into(model: Any, path: Path, architecture: str) -> Any:
    """Load the checkpoint at ``path`` into ``model`` strictly; a mismatch raises XmrError.

    ``model`` may live on the ``meta`` device (built without allocating or initialising
    weights): the checkpoint's tensors are then assigned in place of the meta ones.
    Returns the model.
    """
    on_meta = any(t.is_meta for t in model.state_dict().values())
    result = model.load_state_dict(load_state_dict(path), strict=False, assign=on_meta)
    if result.missing_keys or result.unexpected_keys:
        raise XmrError(
            f"weights file {path} does not fit {architecture}: {len(result.missing_keys)} missing "
            f"keys (e.g. {result.missing_keys[:2]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:2]}); use the checkpoint of that architecture"
        )
    return model


def build_with_weights(constructor: Callable[[], Any], path: Path, architecture: str) -> Any:
    """``constructor()`` built on the meta device (no random init) with ``path`` loaded.

    Falls back to a normal build when the module keeps tensors outside its state dict.
    """
    import torch

    with torch.device("meta"):
        model = constructor()
    load_weights_into(model, path, architecture)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = load_weights_into(constructor(), path, architecture)
    return model


def resolve_hf_model(name_or_dir: str | os.PathLike[str], encoder: str, alternative: str) -> Path:
    """Folder of a Hugging Face model: a local folder as is, else the offline HF cache.

    Raises XmrError naming the cache folder and the bundled ``alternative`` when absent.
    """
    local = Path(name_or_dir).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise XmrError(
                f"model folder {local} has no config.json; save the model there with "
                "model.save_pretrained(folder) and tokenizer.save_pretrained(folder)"
            )
        return local
    from huggingface_hub import constants, snapshot_download

    name = str(name_or_dir)
    try:
        folder = Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception:  # noqa: BLE001 - every failure here means "not cached"
        folder = None
    if folder is None or not (folder / "config.json").is_file():
        raise XmrError(
            f"text encoder {encoder!r} needs the Hugging Face model {name!r}, which is not in the "
            f"offline cache {constants.HF_HUB_CACHE} (nothing is downloaded); on a machine with "
            f"network run `hf download {name}` and copy the cache folder there, or pass "
            f"model=PATH to a folder written by save_pretrained, or use text encoder "
            f"{alternative!r}, which is bundled"
        )
    return folder


def hf_weights_file(folder: Path) -> Path:
    """The weights file of a Hugging Face model folder (safetensors first, then .bin, index)."""
    for name in (
        "model.safetensors",
        "pytorch_model.bin",
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ):
        if (folder / name).is_file():
            return folder / name
    raise XmrError(
        f"model folder {folder} has no model.safetensors or pytorch_model.bin; "
        "save the model there with model.save_pretrained(folder)"
    )
