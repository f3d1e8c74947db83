"""Ctrl-C while papermill runs a notebook: stop the kernel's cell, then the pipeline, quietly.

A terminal's Ctrl-C reaches the pipeline process but not the notebook's kernel (Jupyter starts
kernels in a session of their own). Python's default reaction — a ``KeyboardInterrupt`` deep
inside papermill's event loop — prints a long traceback and shuts the kernel down in the middle
of a cell, which makes the kernel print one more. :func:`interrupt_kernel_on_sigint` instead
forwards the first Ctrl-C to the running kernel, exactly as JupyterLab's stop button does: the
cell ends with ``KeyboardInterrupt``, papermill saves the executed notebook and shuts the
kernel down cleanly, and the caller raises ``KeyboardInterrupt`` itself (the command line then
prints one line). A second Ctrl-C, for a kernel that does not react, interrupts at once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class KernelInterrupts:
    """The kernels started while :func:`interrupt_kernel_on_sigint` is active, and whether
    Ctrl-C was pressed; ``manager_class`` (a ``jupyter_client`` ``AsyncKernelManager`` that
    records each kernel it starts here) is passed to papermill as ``kernel_manager_class``."""

    managers: list[Any] = field(default_factory=list)
    pressed: bool = False
    manager_class: type | None = None

    def interrupt_kernels(self) -> bool:
        """Send SIGINT to each started kernel's process group; True if one was signalled."""
        sent = False
        for manager in self.managers:
            pgid = getattr(getattr(manager, "provisioner", None), "pgid", None)
            if pgid:
                try:
                    os.killpg(pgid, signal.SIGINT)
                    sent = True
                except ProcessLookupError:
                    continue
        return sent


@contextmanager
def interrupt_kernel_on_sigint() -> Iterator[KernelInterrupts]:
    """While active, the first SIGINT interrupts the notebook kernel instead of this process.

    Outside the main thread (where signal handlers cannot be set) this does nothing.
    """
    from jupyter_client.manager import AsyncKernelManager

    state = KernelInterrupts()

    class TrackedKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            state.managers.append(self)

    state.manager_class = TrackedKernelManager

    def on_sigint(signum: int, frame: Any) -> None:
        if state.pressed or not state.interrupt_kernels():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        state.pressed = True

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        yield state
        return
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
