"""What the checks of every kind share: how a failure names its class, small test images,
agreement within rounding (see the package's docstring for the tolerance)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from pydantic import BaseModel, ValidationError



#: Relative agreement asked of two computations that differ only in rounding (see above).
AGREE = 1e-4
#: Steps an optimizer or a scheduler is run for: enough for L-BFGS to use its history and
#: for a checkpoint taken midway to have state to restore.
STEPS = 6


class _Who:
    """How failures name the class under check: `loss 'edges' (EdgeLoss)`."""

    def __init__(self, cls: type, kind: str, base: type):
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise AssertionError(f"{cls!r} is checked as a {kind}, but it is not a subclass of "
                                 f"stylekit.contract.{base.__name__} - subclass it")
        self.cls = cls
        self.text = f"{kind} '{getattr(cls, 'name', '?')}' ({cls.__qualname__.rpartition('<locals>.')[2]})"

    def fail(self, wants: str, did: str) -> AssertionError:
        """'<class>: <what the contract wants> - <what it did>'."""
        return AssertionError(f"{self.text}: {wants} - {did}")

    def call(self, what: str, function: Callable, *args, wants: str = "") -> Any:
        """`function(*args)`; an exception it raises becomes a failure naming `what`."""
        try:
            return function(*args)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            said = f"{type(exc).__name__}{': ' + first if first else ''}"
            raise AssertionError(f"{self.text}: {what} raised {said}{' - ' + wants if wants else ''}") from exc

    def params(self, params: BaseModel | dict | None) -> BaseModel:
        if isinstance(params, BaseModel):
            return params
        try:
            return self.cls.Params.model_validate(params or {})
        except ValidationError as exc:
            given = "the params given" if params else "its Params' defaults"
            raise AssertionError(f"{self.text}: {given} do not validate ({exc.errors()[0]['msg']} at "
                                 f"{'.'.join(map(str, exc.errors()[0]['loc']))}) - pass params=... that do") from None


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(count: int, height: int, width: int, seed: int) -> list[torch.Tensor]:
    """`count` different random test images, (1, 3, height, width) in [0.1, 0.9]."""
    return [0.1 + 0.8 * torch.rand(1, 3, height, width, generator=_generator(seed + k)) for k in range(count)]


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:120]


def _largest_gap(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(largest |a - b|, largest |b|), in float64."""
    a, b = a.detach().double(), b.detach().double()
    return (a - b).abs().max().item(), b.abs().max().item()


def _agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    gap, scale = _largest_gap(a, b)
    return gap <= AGREE * scale + 1e-12
