"""Deprecated path of the sequential-backbone helpers: import them from `stylekit.contract`."""

from stylekit._lazy import moved_module

__getattr__ = moved_module("stylekit.sequential", "stylekit.contract", {"SequentialBackbone", "run_in_sequence"})
