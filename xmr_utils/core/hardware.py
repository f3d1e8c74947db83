"""What the machine computes natively: whether bfloat16 matrix products are worth asking for.

``train.precision="bf16"`` runs the heads under bfloat16 autocast. On a CPU with AMX or
AVX512-BF16 (oneDNN's native bf16 kernels) a wide head trains ~1.6x faster than in float32;
on a CPU without them torch *emulates* bfloat16 products, and they crawl: on a 2-core AMD
EPYC (Zen 3, AVX2), 14 GFLOP/s for a 512^3 product and 0.4 GFLOP/s for a 4096 x 1024 x 4096
one, against 122-137 GFLOP/s in float32 (10x to 300x slower). :func:`native_bf16` tells the
two apart, so the ``flickr8k`` preset asks for bf16 only where it pays and training warns
(:func:`bf16_warning`) where it would crawl.
"""

from __future__ import annotations

import functools


@functools.cache
def native_bf16(device_type: str = "cpu") -> bool:
    """Whether bfloat16 matrix products run natively on ``device_type``: on ``cuda`` where
    torch says the GPU supports bf16, on the CPU where oneDNN has AMX or AVX512-BF16 (torch
    is imported here, not with the module: the presets ask without loading it)."""
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def bf16_warning(device_type: str = "cpu") -> str:
    """The sentence to print when bf16 was asked for on ``device_type`` without native
    support (empty when it is native)."""
    if native_bf16(device_type):
        return ""
    return (
        f"train.precision=bf16 on a {device_type.upper()} without native bfloat16 matrix "
        "products (no AMX or AVX512-BF16): torch emulates them, 10x to 300x slower than "
        "float32 (xmr_utils.core.hardware); set train.precision=fp32 (recipe_overrides) "
        "unless this is a test"
    )
