"""``python -m xmr_utils.pipeline``: the study's command line (:mod:`xmr_utils.app.cli`)."""

import sys

from xmr_utils.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
