"""The MRF (neural patch) style loss of Li & Wand 2016, as a stylekit plugin."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from stylekit import hookimpl
from stylekit.contract import LossTerm, Params, Targets

# Rows of the similarity matrix computed at once: bounds memory at large sizes.
MATCH_BLOCK = 4096


def patches(features: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """(1, c, h, w) features -> (n, c * size * size) patches, in float32."""
    return F.unfold(features.float(), size, stride=stride)[0].T


def nearest(queries: torch.Tensor, candidates_normalized: torch.Tensor) -> torch.Tensor:
    """Index of the candidate with the highest normalized cross-correlation for each query."""
    queries = F.normalize(queries, dim=1)
    return torch.cat([(block @ candidates_normalized.T).argmax(dim=1) for block in queries.split(MATCH_BLOCK)])


class MRFLoss(LossTerm):
    r"""Li & Wand's MRF loss: mean $\|\Psi_i(x) - \Psi_{NN(i)}(s)\|^2$ over neural patches.

    Each patch $\Psi_i(x)$ of the synthesized features is matched to the style patch with
    the highest normalized cross-correlation; with several style images, patches of all of
    them are candidates.
    """

    name = "mrf"
    summary = "Li & Wand 2016 MRF loss: each neural patch pulled to its best-matching style patch."
    default_layers = ("relu3_1", "relu4_1")
    target_images = frozenset({"style"})

    class Params(Params):
        patch_size: int = Field(3, ge=1, le=7, description="patch side, in feature-map positions")
        stride: int = Field(1, ge=1, description="stride over the synthesized image's features")
        style_stride: int = Field(1, ge=1, description="stride over the style features (fewer candidates)")

    def prepare(self, targets: Targets) -> None:
        p = self.params
        self.candidates = {}
        self.normalized = {}
        for name in self.layers:
            found = torch.cat([patches(style[name], p.patch_size, p.style_stride) for style in targets.styles])
            self.candidates[name] = found
            self.normalized[name] = F.normalize(found, dim=1)

    def forward(self, features, image):
        p = self.params

        def layer_loss(name: str) -> torch.Tensor:
            synth = patches(features[name], p.patch_size, p.stride)
            with torch.no_grad():
                match = nearest(synth, self.normalized[name])
            return torch.mean((synth - self.candidates[name][match]) ** 2)

        return self.weighted_sum(layer_loss)


@hookimpl
def register_losses(register):
    register(MRFLoss)
