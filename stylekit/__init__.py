"""stylekit: optimization-based neural style transfer with pluggable components."""

__version__ = "0.1.0"

from .hookspecs import hookimpl

__all__ = ["hookimpl", "__version__"]
