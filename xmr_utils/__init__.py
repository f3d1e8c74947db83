"""xmr_utils: the engine of the xmr cross-modal retrieval study.

Importing the package changes no global state (no seeding, no threads, no downloads).
"""

from xmr_utils.core.errors import XmrError

__all__ = ["XmrError"]
__version__ = "0.1.0"
