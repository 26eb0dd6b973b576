"""`SequentialBackbone`: the `Backbone` contract implemented for networks that run named
modules one after another (VGG and its kin), with activation checkpointing."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from stylekit.contract.components import Backbone


class SequentialBackbone(Backbone):
    """A backbone made of named modules in sequence, with its own input normalization.

    Subclasses call `super().__init__(modules)` with an OrderedDict of name -> module and
    override `normalize`. Features are taken on the way through, and the forward pass
    stops at the deepest requested layer.
    """

    #: `features` recomputes segments in the backward pass when `checkpointing` is set.
    supports_checkpointing = True

    def __init__(self, modules: "OrderedDict[str, nn.Module]"):
        """`modules`: layer name -> module, in forward order; the names are the layers
        recipes read, so they must be what `layer_names_for` lists. Frozen and in eval mode."""
        nn.Module.__init__(self)
        self.body = nn.Sequential(modules)
        self.requires_grad_(False)
        self.eval()

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Map the RGB [0, 1] image to what the first module expects (e.g. ImageNet mean and
        std); the default returns it unchanged."""
        return image

    def truncate(self, layers: frozenset[str]) -> None:
        names = [name for name, _ in self.body.named_children()]
        last = max((names.index(name) for name in layers), default=-1)
        self.body = self.body[: last + 1]

    def features(self, image: torch.Tensor, layers: frozenset[str]) -> dict[str, torch.Tensor]:
        x = self.normalize(image)
        if self.checkpointing and torch.is_grad_enabled():
            return self.checkpointed_features(x, layers)
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        kept = True  # whether x is referenced elsewhere: normalize may return the image itself
        for name, module in self.body.named_children():
            if not wanted:
                break
            x = run_in_sequence([module], x, input_is_kept=kept)
            kept = name in wanted
            if name in wanted:
                out[name] = x
                wanted.discard(name)
        return out

    def checkpointed_features(self, x: torch.Tensor, layers: frozenset[str]) -> dict[str, torch.Tensor]:
        """Features with activation checkpointing: the modules between two requested layers
        run as one segment whose activations are recomputed in the backward pass; only the
        requested layers are kept."""
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        pending: list[nn.Module] = []
        branches: list[tuple[str, nn.Module, torch.Tensor]] = []
        for name, module in self.body.named_children():
            if not wanted:
                break
            pending.append(module)
            if name not in wanted:
                continue
            wanted.discard(name)
            if len(pending) == 1 and wanted:
                # A one-module segment (conv1_1, straight from the image) is cheap to run
                # twice. As a segment boundary it would stay alive, with the gradient the
                # losses send it, until the backward pass reaches the first block, where
                # the peak is; so the next segment runs it again, and the losses read a
                # copy computed after the chain, whose backward pass then comes first.
                branches.append((name, module, x))
                continue
            x = checkpoint(run_in_sequence, pending, x, use_reentrant=False)
            out[name] = x
            pending = []
        for name, module, source in branches:
            out[name] = checkpoint(run_in_sequence, [module], source, use_reentrant=False)
        return out


def run_in_sequence(modules: list[nn.Module], x: torch.Tensor, input_is_kept: bool = True) -> torch.Tensor:
    """Apply `modules` in turn, running each ReLU in place where what it reads is a
    temporary: no other reference to it, so overwriting it saves one activation-sized
    buffer (at full resolution, the largest of the step). The input itself, a requested
    layer or the caller's tensor, is never overwritten."""
    for index, module in enumerate(modules):
        if type(module) is nn.ReLU and not (index == 0 and input_is_kept):
            x = torch.relu_(x)
        else:
            x = module(x)
    return x
