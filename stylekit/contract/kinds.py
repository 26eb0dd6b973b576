"""Every kind of component, by the name the registry and messages use."""

from __future__ import annotations

from stylekit.contract.components import Backbone, Component, LossTerm, Optimizer, Scheduler
from stylekit.contract.flow import FlowProvider

KINDS: dict[str, type[Component]] = {
    "backbone": Backbone,
    "loss": LossTerm,
    "optimizer": Optimizer,
    "scheduler": Scheduler,
    "flow": FlowProvider,
}
