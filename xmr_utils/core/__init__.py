"""The science core of xmr: data, encoders, features, heads, losses, miners, training,
metrics, retrieval and diagnostics.

The core never imports :mod:`xmr_utils.app` (``tests/test_layers.py`` enforces it): everything
here works without notebooks, run folders or widgets, so a script or another application can
use it as a library.
"""
