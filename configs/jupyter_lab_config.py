"""JupyterLab as `make lab` starts it: `jupyter lab --config=configs/jupyter_lab_config.py`.

A traitlets config file (``c`` is the config object; ``__file__`` is this file). Each setting
answers one thing a user of the study met with a plain `jupyter lab notebooks/`; the test
tests/app/test_lab_browser.py starts JupyterLab with this file too.
"""

import logging
import sys
import webbrowser
from pathlib import Path

import zmq

c = get_config()  # noqa: F821 — defined by traitlets when it runs this file

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The file browser starts at the project root, so the notebooks, outputs/runs/<id>/figures and
# the executed copies are all reachable (relative paths inside the notebooks already resolve
# against this root, see xmr_utils.app.runs.project_root).
c.ServerApp.root_dir = str(PROJECT_ROOT)

# A finished run is sealed: its files (the executed copies) open read-only, with "Save as…".
# (The class is this checkout's, importable even where the package is not installed.)
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))
c.ServerApp.contents_manager_class = "xmr_utils.app.lab.SealedRunsContentsManager"

# Voilà (`make browse`, installed with the dev extra) registers a server extension that would
# also serve /voila/ inside JupyterLab; `make browse` runs Voilà on its own, so it stays off here
# (it costs a second and a half at start-up and prints a DeprecationWarning about
# ServerApp.token).
c.ServerApp.jpserver_extensions = {"voila.server_extension": False}

# Containers often run as root; the server listens on the loopback interface only and asks for
# its token, so starting as root needs no flag (jupyter_server otherwise stops at start-up).
c.ServerApp.allow_root = True
c.ServerApp.ip = "127.0.0.1"

# A container has no desktop browser: jupyter_server would warn "No web browser found" at every
# start. Where Python finds none, it does not try (the URL with its token is printed either way).
try:
    webbrowser.get()
except webbrowser.Error:
    c.ServerApp.open_browser = False

# Kernels talk to the server over ZeroMQ on loopback TCP. ipykernel warns at every start that
# this is unencrypted; the installed kernelspec declares CurveZMQ support, so let the kernel
# manager provision Curve keys for it: the traffic is encrypted and the warning has no cause.
# (A pyzmq built without libsodium has no Curve: then nothing changes.)
c.MappingKernelManager.transport_encryption = "auto" if zmq.has("curve") else "disabled"

# Lab-wide defaults of this project, in jupyterlab-settings/overrides.json: no "get notified
# about Jupyter news?" pop-up (there is no network). A user's own settings (Settings > Settings
# Editor) still take precedence. Widget state is deliberately left at JupyterLab's default
# (not saved by Lab): with saving on, opening an executed copy marks it modified, and saving it
# replaces the widget state papermill stored with an empty one, so it would reopen with "Error
# displaying widget: model not found".
c.LabApp.app_settings_dir = str(PROJECT_ROOT / "configs" / "jupyterlab-settings")


# jupyter_server's websocket handlers keep connections alive with their own pings every 30 s
# (ws_ping_interval, in ms) and give up after 90 s without an answer. Tornado reads those two
# numbers as its own (in seconds) and warns at every kernel connection that the timeout is
# longer than the interval; its own pings, every 30000 s, never run. Lowering the timeout to
# the interval would make jupyter_server drop live connections (it checks right before each
# ping), so only that one notice is filtered out.
class _TornadoPingNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "cannot be longer than the websocket_ping_interval" not in record.getMessage()


logging.getLogger("tornado.general").addFilter(_TornadoPingNotice())
