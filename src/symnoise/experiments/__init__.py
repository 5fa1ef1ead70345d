"""Experiments built on the lower layers: sweeps, reports, the noise-norm analysis, demos.

Submodules are imported explicitly (``from symnoise.experiments import norms``); importing
this package alone loads nothing heavy.
"""
