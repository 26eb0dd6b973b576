"""stylekit: optimization-based neural style transfer with pluggable components.

The Python API (docs/api.md): `load` a recipe into a checked `Plan`, `stylize` it, and
`Result.save` what it made. Plugins import `hookimpl` and the base classes from
`stylekit.contract`.
"""

__version__ = "0.1.0"

from stylekit._lazy import lazy_names

# The API imports torch; a plugin that only needs `hookimpl` should not pay for that.
_HOMES = {
    "stylekit.contract.hookspecs": {"hookimpl"},
    "stylekit.api": {"load", "stylize", "stylize_video", "Plan", "Result", "RunDiverged", "StepInfo"},
    "stylekit.errors": {"UserError", "RunFailed", "PluginError"},
}
__getattr__, __dir__ = lazy_names(__name__, _HOMES, ["__version__"])
__all__ = __dir__()
