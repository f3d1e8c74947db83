"""The state of one model's training: the live objects (:class:`Training`) and the loop's
bookkeeping (:class:`TrainState`), both saved in ``last.pt`` so a killed run resumes.

Seeding never touches the caller's global RNG state: :meth:`Training.create` is called
inside ``torch.random.fork_rng`` with ``torch.manual_seed(seed)``; shuffling and miner draws
use their own generators, seeded ``seed + 1`` and ``seed + 2``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, StepLR

from xmr_utils.core.config import Recipe
from xmr_utils.core.heads import DualEncoder
from xmr_utils.core.losses import RecordingLoss, build_loss


def build_training(
    recipe: Recipe, image_dim: int, text_dim: int, device: str | torch.device = "cpu"
) -> tuple[DualEncoder, RecordingLoss, torch.optim.Optimizer, StepLR]:
    """The model, loss, Adam optimiser (over model and loss parameters, e.g. a learnable
    temperature) and StepLR schedule that ``recipe`` describes, on ``device``.

    Weights are drawn from the global torch RNG (seed it, or use ``fork_rng``, first).
    Adam is the fused implementation on CPU and CUDA.
    """
    dev = torch.device(device)
    model = DualEncoder.from_recipe(recipe, image_dim, text_dim).to(dev)
    loss_fn = build_loss(recipe.loss).to(dev)
    params = list(model.parameters()) + list(loss_fn.parameters())
    optim = recipe.optim
    optimizer = torch.optim.Adam(
        params,
        lr=optim.lr,
        weight_decay=optim.weight_decay,
        fused=dev.type in ("cpu", "cuda"),
    )
    scheduler = StepLR(optimizer, optim.step_size, optim.gamma)
    return model, loss_fn, optimizer, scheduler


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class Training:
    """The live objects of one model's training: model, loss, optimiser, schedule, the
    shuffling and miner generators, and the device they live on."""

    model: DualEncoder
    loss_fn: RecordingLoss
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    shuffle_gen: torch.Generator
    miner_gen: torch.Generator
    device: torch.device

    @classmethod
    def create(
        cls, recipe: Recipe, image_dim: int, text_dim: int, device: torch.device, seed: int
    ) -> Training:
        """Seed the global torch RNG with ``seed`` and build everything ``recipe`` describes
        (call inside ``torch.random.fork_rng``)."""
        torch.manual_seed(seed)
        model, loss_fn, optimizer, scheduler = build_training(recipe, image_dim, text_dim, device)
        shuffle_gen = torch.Generator().manual_seed(seed + 1)
        miner_gen = torch.Generator(device=device).manual_seed(seed + 2)
        return cls(model, loss_fn, optimizer, scheduler, shuffle_gen, miner_gen, device)

    def state_dict(self) -> dict[str, Any]:
        """Every state a resumed run needs, the global torch RNG included."""
        return {
            "model": self.model.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "shuffle_rng": self.shuffle_gen.get_state(),
            "miner_rng": self.miner_gen.get_state(),
            "torch_rng": _rng_state(self.device),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (sets the global torch RNG too)."""
        self.model.load_state_dict(saved["model"])
        self.loss_fn.load_state_dict(saved["loss"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.shuffle_gen.set_state(saved["shuffle_rng"])
        self.miner_gen.set_state(saved["miner_rng"])
        _set_rng_state(saved["torch_rng"], self.device)


@dataclass
class TrainState:
    """The loop's bookkeeping after ``epoch`` finished epochs (1-based ``best_epoch``).

    ``best_rsum`` / ``best_epoch`` / ``best_val`` describe the best validation so far;
    ``bad`` counts validations since it; ``stopped`` is set by an early stop. Saved in
    ``last.pt`` as a plain dict (:meth:`to_dict`), the form older files hold too.
    """

    epoch: int = 0
    best_rsum: float = -math.inf
    best_epoch: int = 0
    best_val: dict[str, Any] = field(default_factory=dict)
    bad: int = 0
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainState:
        return cls(**{f.name: saved[f.name] for f in fields(cls)})

    def finished(self, epochs: int) -> bool:
        """Whether nothing is left to train: stopped early, or ``epochs`` epochs done."""
        return self.stopped or self.epoch >= epochs

    def validated(self, epoch: int, val: dict[str, Any], patience: int | None) -> bool:
        """Record the validation ``val`` of 1-based ``epoch``; True when it is the new best
        (higher ``val_rsum``). ``patience`` validations without one set ``stopped``."""
        if val["val_rsum"] > self.best_rsum:
            self.best_rsum, self.best_epoch, self.best_val, self.bad = (
                val["val_rsum"],
                epoch,
                val,
                0,
            )
            return True
        self.bad += 1
        if patience is not None and self.bad >= patience:
            self.stopped = True
        return False
