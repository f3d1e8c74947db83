"""Where encoder weights come from, how they are identified, and the one download switch.

Order of resolution for torchvision models: an explicit ``weights=PATH`` option, then the
torch hub cache ``$TORCH_HOME/hub/checkpoints/<file name of the weights enum url>``
(:func:`torch.hub.get_dir`). Hugging Face models: a local folder, then the HF cache with
``local_files_only=True``.

Nothing is downloaded unless the download switch is on: the notebook parameter
``download_weights`` (``-p download_weights True``), which wraps extraction in
:func:`allow_downloads`, or the environment variable ``XMR_DOWNLOAD_WEIGHTS=1``. With it, a
missing torchvision checkpoint is fetched the way torchvision's weights API fetches it
(:func:`torch.hub.download_url_to_file`: the sha256 prefix in the file name is checked, with a
progress bar) into the hub cache, and a missing Hugging Face model through ``from_pretrained``
into the HF cache; ``HF_HUB_OFFLINE`` (set by the Makefile and the pipeline) is lifted for
that call only, in this process only (:func:`hub_online`). With the switch off, a missing file
raises ONE :class:`XmrError` naming the file, the folder to put it in, the switch and the
bundled alternative.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:
    import torch

_FULL_HASH_LIMIT = 2 * 1024**3  # bigger files are identified by size + head + tail
_SAMPLE = 64 * 1024**2
_hash_memo: dict[tuple[str, int, int], str] = {}

DOWNLOAD_ENV = "XMR_DOWNLOAD_WEIGHTS"
#: How the switch is named in messages.
SWITCH = f"-p download_weights True (or {DOWNLOAD_ENV}=1)"
_TRUE = frozenset({"1", "true", "yes", "on"})
_allowed: list[bool] = []  # the stack of allow_downloads() blocks of this process


def downloads_enabled() -> bool:
    """True inside ``allow_downloads(True)`` or when ``XMR_DOWNLOAD_WEIGHTS`` is 1/true/yes/on."""
    if _allowed and _allowed[-1]:
        return True
    return os.environ.get(DOWNLOAD_ENV, "").strip().lower() in _TRUE


@contextmanager
def allow_downloads(enabled: bool = True) -> Iterator[None]:
    """Turn the download switch on (``enabled``) for the body of the ``with`` block.

    ``allow_downloads(False)`` changes nothing: the environment variable still applies.
    """
    _allowed.append(bool(enabled))
    try:
        yield
    finally:
        _allowed.pop()


@contextmanager
def hub_online() -> Iterator[None]:
    """Lift ``HF_HUB_OFFLINE`` for this process while the body downloads.

    huggingface_hub reads the variable once, at import, into ``constants.HF_HUB_OFFLINE``;
    transformers asks the same constant. Only that constant is changed (and restored), not
    the environment, so child processes stay offline.
    """
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


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
    """Path of the checkpoint for the torchvision weights at ``url``.

    Args:
        url: ``<WeightsEnum member>.url``; its file name is what the hub cache holds.
        explicit: the ``weights=`` option, used when given (it must exist).
        encoder: encoder spec for the message, e.g. ``"vgg16"``.
        alternative: bundled encoder to suggest, e.g. ``"efficientnet_lite0"``.

    A file missing from the hub cache is downloaded when :func:`downloads_enabled`.
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
    if downloads_enabled():
        return download_torchvision_checkpoint(url, folder)
    raise XmrError(
        f"image encoder {encoder!r} needs the weights file {name} and it is not in {folder} "
        f"(offline, nothing is downloaded); rerun with {SWITCH} to download it there, or put "
        f"{name} (from {url}) into {folder}/ yourself, or pass weights=PATH, or use image "
        f"encoder {alternative!r}, which is bundled"
    )


def download_torchvision_checkpoint(url: str, folder: Path) -> Path:
    """Download ``url`` into ``folder`` as torchvision's weights API does; return the file.

    The same call as ``WeightsEnum.get_state_dict(check_hash=True)`` minus the loading:
    :func:`torch.hub.download_url_to_file` writes a temporary file, checks the sha256 prefix
    that the file name carries (``vgg16-397923af.pth``), shows a progress bar and moves the
    file into place only when it matches. Failures raise XmrError naming the file and URL.
    """
    from urllib.error import URLError

    from torch.hub import HASH_REGEX, download_url_to_file

    name = url_file_name(url)
    match = HASH_REGEX.search(name)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    try:
        download_url_to_file(url, str(target), match.group(1) if match else None, progress=True)
    except RuntimeError as exc:
        if "invalid hash value" not in str(exc):
            raise
        raise XmrError(
            f"the download of {name} from {url} does not match the sha256 prefix in its name "
            f"({exc}); nothing was written to {folder}; retry, or fetch the file by another "
            "route and check it"
        ) from None
    except (URLError, OSError) as exc:
        raise XmrError(
            f"cannot download {name} from {url} ({type(exc).__name__}: {exc}), asked for by "
            f"{SWITCH}; check the network, or put {name} into {folder}/ yourself"
        ) from None
    return target


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


def _cached_hf_snapshot(name: str) -> Path | None:
    """The HF cache folder of model ``name`` when it holds a ``config.json``, else None."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception:  # noqa: BLE001 - every failure here means "not cached"
        return None
    return folder if (folder / "config.json").is_file() else None


def download_hf_model(name: str) -> Path:
    """Fetch model ``name`` (tokenizer, config, weights) with ``from_pretrained`` into the HF
    cache, HF_HUB_OFFLINE lifted for this call; return its cache folder."""
    from huggingface_hub import constants
    from transformers import AutoModel, AutoTokenizer

    try:
        with hub_online():
            AutoTokenizer.from_pretrained(name)
            AutoModel.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise XmrError(
            f"cannot download the Hugging Face model {name!r} from {constants.ENDPOINT} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]}), asked for by {SWITCH}; check "
            f"the network, or copy the model into {constants.HF_HUB_CACHE} yourself"
        ) from None
    folder = _cached_hf_snapshot(name)
    if folder is None:
        raise XmrError(
            f"the Hugging Face model {name!r} was downloaded but its cache folder in "
            f"{constants.HF_HUB_CACHE} has no config.json; remove that folder and retry"
        )
    return folder


def resolve_hf_model(name_or_dir: str | os.PathLike[str], encoder: str, alternative: str) -> Path:
    """Folder of a Hugging Face model: a local folder as is, else the HF cache (downloaded
    into it when :func:`downloads_enabled`).

    Raises XmrError naming the cache folder, the switch and the bundled ``alternative`` when
    absent.
    """
    local = Path(name_or_dir).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise XmrError(
                f"model folder {local} has no config.json; save the model there with "
                "model.save_pretrained(folder) and tokenizer.save_pretrained(folder)"
            )
        return local
    from huggingface_hub import constants

    name = str(name_or_dir)
    folder = _cached_hf_snapshot(name)
    if folder is not None:
        return folder
    if downloads_enabled():
        return download_hf_model(name)
    raise XmrError(
        f"text encoder {encoder!r} needs the Hugging Face model {name!r}, which is not in the "
        f"offline cache {constants.HF_HUB_CACHE} (nothing is downloaded); rerun with {SWITCH} "
        f"to download it there, or on a machine with network run `hf download {name}` and "
        f"copy the cache folder, or pass model=PATH to a folder written by save_pretrained, "
        f"or use text encoder {alternative!r}, which is bundled"
    )


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
