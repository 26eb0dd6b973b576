"""Deprecated path of the hook specifications: import `hookimpl` from `stylekit` or
`stylekit.contract`."""

from stylekit._lazy import moved_module

__getattr__ = moved_module("stylekit.hookspecs", "stylekit.contract.hookspecs")
