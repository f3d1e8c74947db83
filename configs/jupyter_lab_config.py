"""JupyterLab as `make lab` starts it: `jupyter lab --config=configs/jupyter_lab_config.py`.

A traitlets config file (``c`` is the config object; ``__file__`` is this file). Each setting
answers one thing a user of the study met on a plain `jupyter lab notebooks/`:
"""

from pathlib import Path

import zmq

c = get_config()  # noqa: F821 — defined by traitlets when it runs this file

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The file browser starts at the project root, so the notebooks, outputs/runs/<id>/figures and
# the executed copies are all reachable (relative paths inside the notebooks already resolve
# against this root, see xmr_utils.app.runs.project_root).
c.ServerApp.root_dir = str(PROJECT_ROOT)

# Containers often run as root; the server listens on the loopback interface only and asks for
# its token, so starting as root needs no flag (jupyter_server otherwise stops at start-up).
c.ServerApp.allow_root = True
c.ServerApp.ip = "127.0.0.1"

# Kernels talk to the server over ZeroMQ on loopback TCP. ipykernel warns at every start that
# this is unencrypted; the installed kernelspec declares CurveZMQ support, so let the kernel
# manager provision Curve keys for it: the traffic is encrypted and the warning has no cause.
# (A pyzmq built without libsodium has no Curve: then nothing changes.)
c.MappingKernelManager.transport_encryption = "auto" if zmq.has("curve") else "disabled"

# Lab-wide defaults of this project (widget state saved with a notebook, so a saved notebook
# reopens its widgets instead of "Error displaying widget: model not found"); a user's own
# settings (Settings > Settings Editor) still take precedence.
c.LabApp.app_settings_dir = str(PROJECT_ROOT / "configs" / "jupyterlab-settings")

# jupyter_server pings a websocket every 30 s and allows 90 s for the answer; tornado allows at
# most the interval and warns at every connection that it shortened it. Say it directly.
c.ServerApp.tornado_settings = {"ws_ping_interval": 30000, "ws_ping_timeout": 30000}
