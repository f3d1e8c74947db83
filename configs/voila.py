"""Voilà as `make browse` starts it: the query browser of notebook 06 as a stand-alone page.

A traitlets config file that Voilà finds by name (``voila.py``) in ``--Voila.config_file_paths``;
the settings mirror those of jupyter_lab_config.py, with the same reasons.
"""

import logging

import zmq

c = get_config()  # noqa: F821 — defined by traitlets when it runs this file

# Loopback only, behind a token (printed in the URL at start-up), like JupyterLab; the page is
# the notebook's outputs, its code cells are not shown.
c.Voila.ip = "127.0.0.1"
c.Voila.auto_token = True
c.Voila.open_browser = False

# CurveZMQ keys for the notebook's kernel: encrypted loopback traffic, no ipykernel warning.
c.MappingKernelManager.transport_encryption = "auto" if zmq.has("curve") else "disabled"

# An error in the notebook shows its message on the page (a local, single-user app).
c.VoilaConfiguration.show_tracebacks = True


# Tornado's false notice about jupyter_server's websocket ping timeout (see
# jupyter_lab_config.py for why it is false).
class _TornadoPingNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "cannot be longer than the websocket_ping_interval" not in record.getMessage()


logging.getLogger("tornado.general").addFilter(_TornadoPingNotice())
