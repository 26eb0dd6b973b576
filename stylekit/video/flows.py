"""Asking a flow provider for a flow, and holding it to the contract: a provider is a plugin,
and a flow of the wrong shape or with a NaN in it would otherwise surface frames later as a
smeared or black output, far from its cause. Whatever the provider gets wrong becomes a
`PluginError` (a failed run, exit status 3) that names it and its package; a `UserError` it
raises (a missing .flo file, OpenCV not installed) is the user's input and passes through,
and so does running out of memory, which is the sizes' fault, not the provider's.
"""

from __future__ import annotations

import traceback

import torch

from stylekit.contract.flow import FlowProvider, FramePair
from stylekit.errors import TRACEBACK_ENV, PluginError, Problem, UserError
from stylekit.run.failures import is_resource_failure


def checked_flow(provider: FlowProvider, source: torch.Tensor, target: torch.Tensor, pair: FramePair,
                 package: str) -> torch.Tensor:
    """`provider.flow(source, target, pair)` as a (1, 2, H, W) float32 tensor on the CPU, H
    and W the frames'; a PluginError naming `provider` and `package` where it raises or
    returns anything else (another shape, not a float tensor, a NaN or an infinity)."""
    name = type(provider).name
    who = f"flow '{name}' of package '{package}'"
    frames = f"frames {pair.source} -> {pair.target}"
    try:
        flow = provider.flow(source, target, pair)
    except UserError:
        raise
    except Exception as exc:
        if is_resource_failure(exc):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        raise PluginError(Problem(f"{who} raised {type(exc).__name__}{': ' + first if first else ''} in flow() for "
                                  f"{frames} - a bug in {package}, or params it does not handle; {TRACEBACK_ENV}=1 "
                                  "or --traceback shows the traceback", field="flow",
                                  details="".join(traceback.format_exception(exc))),
                          exc, package, "flow", name) from exc
    wrong = flow_breach(flow, tuple(source.shape[-2:]))
    if wrong:
        raise PluginError(Problem(f"{who} broke the contract for {frames}: flow() returned {wrong} - a bug in "
                                  f"{package}", field="flow"), None, package, "flow", name)
    return flow.detach().to(device="cpu", dtype=torch.float32).contiguous()


def flow_breach(flow, size: tuple[int, int]) -> str | None:
    """What is wrong with `flow` as the flow between frames of `size` (H, W), or None."""
    height, width = size
    if not isinstance(flow, torch.Tensor):
        return f"{type(flow).__name__}, not a tensor of shape (1, 2, {height}, {width})"
    if tuple(flow.shape) != (1, 2, height, width):
        return f"a tensor of shape {tuple(flow.shape)}, not (1, 2, {height}, {width}) as the frames are"
    if not flow.is_floating_point():
        return f"a {flow.dtype} tensor, not float32"
    bad = (~torch.isfinite(flow)).sum().item()
    if bad:
        return f"{bad} non-finite values (NaN or infinity) among its {flow.numel()}"
    return None
