"""stylekit: optimization-based neural style transfer with pluggable components.

The Python API (docs/api.md): `load` a recipe into a checked `Plan`, `stylize` it, and
`Result.save` what it made. Plugins import `hookimpl` and the base classes in
`stylekit.components`.
"""

__version__ = "0.1.0"

from .hookspecs import hookimpl

_API = {"load", "stylize", "Plan", "Result", "RunDiverged", "StepInfo"}
_ERRORS = {"UserError", "RunFailed"}


def __getattr__(name: str):
    # The API imports torch; a plugin that only needs `hookimpl` should not pay for that.
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _ERRORS:
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'stylekit' has no attribute '{name}'")


__all__ = ["hookimpl", "__version__", *sorted(_API), *sorted(_ERRORS)]
