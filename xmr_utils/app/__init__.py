"""The notebook app on top of :mod:`xmr_utils.core`: run folders (``runs``), the notebooks'
steps (``study``), the papermill runner (``runner``) and its command line (``cli``), ablation
grids (``ablation``), the query browser (``browser``) and every figure (``viz``).

The app imports the core, never the other way round (``tests/test_layers.py``).
"""
