r"""The temporal consistency term of video stylization (Ruder, Dosovitskiy & Brox, GCPR 2016,
section 3.3; written from the paper): the frame being stylized is held, pixel by pixel, to
the earlier frames' outputs brought into it by optical flow, where that flow can be trusted.

With the earlier outputs $p_1, p_2, \dots$ nearest first (`Targets.previous`) and their
certainties $c_k \in [0, 1]$, each pixel answers to the nearest earlier frame that saw it:

$$ w_k = c_k \prod_{j<k} (1 - c_j), \qquad
   L(x) = \frac{1}{3HW} \sum_k \sum_{\text{pixels, channels}} w_k\, (x - p_k)^2 $$

so a pixel occluded in the frame before but seen two frames back is held to that one (the
paper's long-term term). Dividing by the number of values, not summing them, keeps the
weight the same at any size; RGB in [0, 1], where Ruder's weights are for 0-255 pixels and
a sum, so theirs do not carry over. Without earlier outputs (a still image, the first frame
of a clip or of a new shot after a scene cut) the term is 0 and pulls nowhere.

Held only to the frames just before, a still region drifts: every frame runs its steps a
little further down the recipe's loss from where the last one ended (held, each time, to an
output that had itself moved), so over a shot the region slides towards the recipe's optimum
(by 17/255 on average over 100 frames of a still clip, benchmarks/video.py). So a frame is
also held to its shot's *anchor* (`PreviousOutput.anchor`: the shot's first output, or a
later one once the first can no longer be traced), where the region is still since then and
the flow certain (`stylekit.video.start.warped_earlier`), with the weight $b\,c_a$ beside the
frames before ($b$ = `ANCHOR_WEIGHT`):

$$ L(x) = \frac{1}{3HW} \sum \Big[ \sum_k w_k (x - p_k)^2 + b\, c_a (x - p_{anchor})^2 \Big] $$

The anchor never moves, so the drift no longer accumulates: once the frame before sits where
the next frame would leave it, all that still pulls is the recipe's gradient against the
anchor's weight, and the region stays within a bounded distance of the anchor.
"""

from __future__ import annotations

import torch

from stylekit.builtins.losses import wide
from stylekit.contract.components import LossTerm, PreviousOutput, Targets
from stylekit.contract.hookspecs import hookimpl

#: The weight `stylekit video` gives the term when a recipe has none (see `TemporalLoss`).
DEFAULT_WEIGHT = 1e5


def precedence(certainties: list[torch.Tensor]) -> torch.Tensor:
    """The (K, 1, H, W) weights w_k = c_k * prod_{j<k} (1 - c_j) of certainties given nearest
    first: a pixel counts for the nearest earlier frame that is certain of it, and for a
    farther one only as far as the nearer ones are not. The weights sum to at most 1."""
    weights, unclaimed = [], None
    for certainty in certainties:
        certainty = wide(certainty)
        weights.append(certainty if unclaimed is None else certainty * unclaimed)
        unclaimed = 1 - certainty if unclaimed is None else unclaimed * (1 - certainty)
    return torch.cat(weights)


#: How much the anchor counts, where it is certain, beside the frames before (whose weights
#: sum to at most 1).
ANCHOR_WEIGHT = 2.0


def hold_weights(previous: list[PreviousOutput]) -> tuple[list[PreviousOutput], torch.Tensor]:
    """The earlier outputs in the order the term holds them (the nearest first, the anchors
    last) and their (K, 1, H, W) weights: `precedence` among the frames before, and
    `ANCHOR_WEIGHT` times its certainty for an anchor."""
    chain = sorted((p for p in previous if not p.anchor), key=lambda p: p.offset)
    anchors = [p for p in previous if p.anchor]
    weights = [precedence([p.certainty for p in chain])] if chain else []
    weights += [ANCHOR_WEIGHT * wide(p.certainty) for p in anchors]
    return chain + anchors, torch.cat(weights)


class TemporalLoss(LossTerm):
    """Certainty-weighted squared distance to earlier frames' outputs warped into this frame
    (video only; 0 for a still image).

    Its default weight, 1e5, which `stylekit video` gives it when a recipe lists no
    `temporal` term, was found by a sweep: benchmarks/video_clips.py's synthetic clip (a
    photo under a pan, zoom and drift, a textured disc crossing it; its exact flow fed to
    the loop) stylized with recipes/gatys.toml at 128x96 on a 2-core CPU, 23 steps a later
    frame, against the same recipe and seed on each frame alone. Warping error (true flow,
    Lai et al.) and the mean per-frame content and style distances of stylekit.video.metrics
    over the frames after the first, relative to the frames alone:

    | weight | warping error, 8 frames | content | style | 24 frames: error at 1 / at 10 | content | style |
    |---|---|---|---|---|---|---|
    | 0 (warm start alone) | 0.20x | 0.85x | 0.95x | | | |
    | 1e3 | 0.19x | 0.85x | 0.95x | | | |
    | 1e4 | 0.13x | 0.86x | 0.97x | | | |
    | 3e4 | 0.08x | 0.89x | 0.99x | 0.07x / 0.49x | 0.85x | 0.97x |
    | **1e5** | **0.03x** | **0.99x** | **1.03x** | **0.03x / 0.31x** | **0.94x** | **1.02x** |
    | 3e5 | 0.01x | 1.15x | 1.07x | | | |
    | 1e6 | 0.004x | 1.39x | 1.12x | | | |

    Below 1e4 the term hardly counts beside gatys.toml's content and style terms (about 300
    each at a later frame's end; the term's unweighted value is a mean square, about 1e-3
    for an RMS change of 0.03); 1e5 is the largest weight tried that keeps both content and
    style within 10% of the frames alone, and the one that holds drift (offset 10) best
    within that. `python benchmarks/temporal_weight.py` (then `--frames 24 --weights
    30000,100000`) makes the table; the first run's console output is in its docstring."""

    name = "temporal"
    summary = "Video: certainty-weighted squared distance to the earlier frames' outputs, warped into this frame."
    reads_features = False
    default_layers = ()
    # It reads no features, so no image's features need computing for it.
    target_images = frozenset()

    def prepare(self, targets: Targets) -> None:
        if not targets.previous:
            self.targets = self.weights = None
            return
        previous, self.weights = hold_weights(targets.previous)  # weights (K, 1, H, W)
        self.targets = torch.cat([wide(p.image) for p in previous])  # (K, 3, H, W)

    def forward(self, features, image):
        if self.targets is None:  # nothing to be consistent with: inert, not an error
            return wide(image).new_zeros(())
        return self._distance(wide(image), self.targets, self.weights)

    @staticmethod
    def _distance(images: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # images (n, 3, H, W); targets and weights (K, ...) for one image or (n, K, ...) for n.
        if targets.dim() == 4:
            return ((images - targets).pow(2) * weights).sum() / images[0].numel()
        squared = (images.unsqueeze(1) - targets).pow(2) * weights
        return squared.sum(dim=(1, 2, 3, 4)) / images[0].numel()

    @classmethod
    def together(cls, terms):
        # Each image's earlier outputs stacked; one with fewer than the others is padded with
        # zero weights, which add nothing. Images without any get all-zero weights: their
        # value is the 0 their forward gives.
        held = [t for t in terms if t.targets is not None]
        if not held:
            return lambda features, images: wide(images).new_zeros(len(terms))
        most = max(t.targets.shape[0] for t in held)
        like_image, like_weight = held[0].targets[:1], held[0].weights[:1]

        def padded(tensor: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
            count = 0 if tensor is None else tensor.shape[0]
            pad = like.new_zeros((most - count, *like.shape[1:]))
            return pad if tensor is None else torch.cat([tensor, pad])

        targets = torch.stack([padded(t.targets, like_image) for t in terms])
        weights = torch.stack([padded(t.weights, like_weight) for t in terms])
        return lambda features, images: cls._distance(wide(images), targets, weights)


@hookimpl
def register_losses(register):
    register(TemporalLoss)


__all__ = ["ANCHOR_WEIGHT", "DEFAULT_WEIGHT", "TemporalLoss", "hold_weights", "precedence"]
