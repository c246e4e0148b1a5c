"""Signals: the x86-64 signal frame (frame.py) and choosing, delivering and defaulting signals (deliver.py)."""
