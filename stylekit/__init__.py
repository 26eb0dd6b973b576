"""stylekit: optimization-based neural style transfer with pluggable components."""

__version__ = "0.1.0"
