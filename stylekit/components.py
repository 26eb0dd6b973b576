"""Deprecated path of the component base classes: import them from `stylekit.contract`."""

from stylekit._lazy import moved_module

__getattr__ = moved_module("stylekit.components", "stylekit.contract")
