"""Several images optimized together: one backbone pass over the stacked images per step,
and everything else per image, so that each comes out as it would alone.

The backbone has no layer that mixes the images of a batch (no batch normalization), so
stacking them changes nothing but the cost of the pass, and in exact arithmetic nothing at
all. In floating point the convolution kernels that oneDNN (CPU) and cuDNN (GPU) choose
depend on the batch size, so a stacked image's gradient differs from its own run's in the
last bits (about 1e-8 here), and Adam, whose step is about lr x sign(gradient) where the
gradient is near zero, turns that into differences of 1e-4 within a few steps. A CPU gains
almost nothing from stacking (it is busy either way), so on a CPU each image gets its own
pass and comes out exactly as alone; on a GPU, where one image leaves most of it idle, the
images are stacked (`stacked=True` in `stylekit.run.loop.optimize_group`, the step loop of
every run: one image is a group of one). Each image keeps its own loss
terms (its content targets), its own optimizer and scheduler (L-BFGS history, step count
and convergence are per image, as they must be: one L-BFGS over the whole batch would
couple the images through its dot products) and its own divergence check. A loss term
whose class offers `LossTerm.together` (the built-in ones) is evaluated once for the whole
group, each image against its own targets; any other is called once per image on that
image's slice of the features, so every plugin term works here unchanged.

Stepping one torch optimizer per image is cheap for Adam but not for L-BFGS, whose
two-loop recursion is hundreds of small kernels per image and step. Where the images are
stacked and the learning rate is constant, an optimizer may offer one stepper for the whole
group (`Optimizer.build_together`; the built-in L-BFGS does, see batched_lbfgs.py), which
keeps every image's state apart but runs each kernel once for all of them.

Here: the loss terms of stacked images, evaluated at once (`group_values`); the stacked
pass that calls it is in `stylekit.run.passes`.
"""

from __future__ import annotations

import torch

from stylekit.run.engine import Objective, check_term_value


def _slice_by_slice(terms: list):
    """The fallback for a term that offers no `together`: each image's term on its own slice."""
    checked = [False]  # each term's value checked against the contract at the first call, once

    def values(features: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        results = [term({name: value[k:k + 1] for name, value in features.items()}, images[k:k + 1])
                   for k, term in enumerate(terms)]
        if not checked[0]:
            checked[0] = True
            for term, result in zip(terms, results):
                check_term_value(term, result)
        return torch.stack(results)
    return values


def _together_is_its_own(cls: type) -> bool:
    """Whether `cls.together` evaluates what `cls.forward` computes: not so for a subclass
    that changes `forward` or `prepare` (a plugin's variant of a built-in term) but inherits
    its parent's `together`, which knows only the parent's."""
    def defining(name: str) -> type:
        return next(base for base in cls.__mro__ if name in vars(base))
    home = defining("together")
    return all(issubclass(home, defining(name)) for name in ("forward", "prepare"))


def group_values(objectives: list[Objective], device: torch.device, together: bool = True):
    """One function from the stacked features and images of `objectives`' images (in that
    order) to their weighted term values, an (n images, n terms) tensor: per term, all
    images at once where the term class offers `LossTerm.together` (and `together` is
    true: False is for benchmarks/group_step.py), else slice by slice.
    The objectives come from one recipe, so term j is the same component for every image."""
    columns = []
    for j in range(len(objectives[0].terms)):
        weighted = [objective.terms[j] for objective in objectives]
        terms = [wt.term for wt in weighted]
        kinds = {type(term) for term in terms}
        values = type(terms[0]).together(terms) if together and len(kinds) == 1 and _together_is_its_own(
            type(terms[0])) else None
        if values is None:
            values = _slice_by_slice(terms)
        # Made on the device here, not in the pass: a copy from the host cannot be recorded
        # in a CUDA graph.
        columns.append((values, torch.tensor([wt.weight for wt in weighted], device=device)))

    def evaluate(features: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        return torch.stack([values(features, images) * weights for values, weights in columns], 1)
    return evaluate
