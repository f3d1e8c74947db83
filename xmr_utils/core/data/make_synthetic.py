"""``python -m xmr_utils.core.data.make_synthetic --out DIR --images N --seed S``: write the
offline synthetic dataset (:func:`xmr_utils.core.data.synthetic.main`).

A module of its own because the package imports :mod:`~xmr_utils.core.data.synthetic`, and
``python -m`` on a module its package already imported would import it twice.
"""

import sys

from xmr_utils.core.data.synthetic import main

if __name__ == "__main__":
    sys.exit(main())
