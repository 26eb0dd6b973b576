"""What a plugin implements, public: `hookimpl` and the hook specifications, the base
classes of the four component kinds (`Backbone`, `LossTerm`, `Optimizer`, `Scheduler`, with
`Params` and `Targets`) and the helpers for sequential backbones (`SequentialBackbone`).

    from stylekit.contract import LossTerm, Params, hookimpl
"""

from stylekit._lazy import lazy_names
from stylekit.contract import hookspecs
from stylekit.contract.hookspecs import hookimpl

# The base classes import torch; a plugin module that only needs `hookimpl` (its classes
# live in another module) should not pay for that at load.
_HOMES = {
    "stylekit.contract.components": {"Params", "Component", "Backbone", "Targets", "LossTerm", "Optimizer",
                                     "BatchedStepper", "Scheduler", "PreviousOutput"},
    "stylekit.contract.flow": {"FlowProvider", "FramePair"},
    "stylekit.contract.kinds": {"KINDS"},
    "stylekit.contract.sequential": {"SequentialBackbone", "run_in_sequence"},
}
__getattr__, __dir__ = lazy_names(__name__, _HOMES, ["hookimpl", "hookspecs"])
__all__ = __dir__()
