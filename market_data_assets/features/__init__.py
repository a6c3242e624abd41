"""MFT features (1m and above): a declarative registry and its vectorized, point-in-time computation.

Plain polars, no Dagster (wired in ``defs/features.py``). See docs/FEATURES.md.
"""
