"""Module attributes served on first use: lazy public names (importing them costs torch,
which a plugin that only needs `hookimpl` should not pay at load), and old import paths
kept working with a DeprecationWarning that names the new one."""

import importlib
import warnings


def lazy_names(package: str, homes: dict[str, set[str]], eager: list[str]):
    """`__getattr__` and `__dir__` for `package`: each name in `homes[module]` is imported
    from that module when first asked for; `dir()` (tab completion) lists them with the
    `eager` names the package defines itself."""
    where = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*eager, *where})
    return __getattr__, __dir__


def moved_module(old: str, new: str, names: set[str] | None = None):
    """A module `__getattr__` for `old` that hands out the attributes of `new`, warning at
    the importer's line (a module-level warning would point into importlib)."""
    def __getattr__(name: str):
        if name.startswith("__") or (names is not None and name not in names):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old} moved to {new}: import from {new}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)
    return __getattr__
