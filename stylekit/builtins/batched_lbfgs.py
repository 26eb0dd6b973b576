"""L-BFGS for a group of same-size images stepped together: per image the algorithm of
`torch.optim.LBFGS(max_iter=1, line_search_fn=None, tolerance_grad=-1, tolerance_change=-1)`,
for all images at once with tensor ops over a batch dimension.

Stepping one torch L-BFGS per image costs, per image and step, a two-loop recursion of
4 x history tiny kernels and several waits for the device (`if ys > 1e-10`, the `alpha=`
of a tensor); for 16 images on a GPU that dwarfs the stacked backbone pass. Here every
image is a row: the same kernels run once for the whole group and nothing waits for the
device.

Per image (row b), one step with gradient g at x, as torch does it:

- first step: d = -g, t = min(1, 1/|g|_1) * lr;
- later steps: y = g - g_prev, s = t_prev * d_prev; the pair (s, y) joins the image's
  history only when y.s > 1e-10 (the oldest leaves when `history` are kept), and then
  H_diag = y.s / y.y; d is -H g by the two-loop recursion over the image's pairs (newest
  to oldest, then back), and t = lr;
- x += t d, unless g.d > 1 (torch's `gtd > -tolerance_change` with tolerance_change = -1),
  where x stays and d, t and g are still kept for the next step.

Images accept different numbers of pairs, so the history is a ring buffer per row:
S, Y of shape (history, B, N) with a write position and a count per row; recursion index
k (0: the oldest pair) reads slot (position - count + k) mod history of each row, and
k >= count is masked to an exact no-op. Memory is torch's: 2 x history image-sized
tensors per image.

How a row's sums are computed is apart (`BatchedRows` on a GPU, `TorchRows` on the CPU,
where each image comes out bit for bit as with torch's LBFGS alone).
"""

from __future__ import annotations

import torch

from stylekit.contract.components import BatchedStepper

#: torch's LBFGS keeps a pair only when y.s is above this (lbfgs.py, "if ys > 1e-10").
CURVATURE_FLOOR = 1e-10
#: torch's `gtd > -tolerance_change` with the tolerance_change = -1 that stylekit uses.
ASCENT_LIMIT = 1.0


class BatchedRows:
    """The row-wise operations of a step as one kernel each for the whole group (GPUs).
    Each row's sums run in another order than torch's `dot` for one image, so a row
    differs from its image's own run in the last bits, as stacking in cuDNN already does."""

    @staticmethod
    def dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # A product and a reduction, both bandwidth-bound and well spread over a GPU; a
        # (B, 1, N) x (B, N, 1) bmm would leave cuBLAS one long reduction per row.
        return (a * b).sum(1)

    @staticmethod
    def abs_sums(a: torch.Tensor) -> torch.Tensor:
        return a.abs().sum(1)

    @staticmethod
    def add_scaled_(x: torch.Tensor, scale: torch.Tensor, y: torch.Tensor) -> None:
        x.addcmul_(scale.unsqueeze(1), y)  # x += scale y, without a (B, N) temporary

    @staticmethod
    def move(images: list[torch.Tensor], alive: list[int], d: torch.Tensor, t: torch.Tensor, moves: torch.Tensor) -> None:
        """images[i] += t[i] d[i] for each i in `alive` where moves[i]."""
        update = torch.where(moves.unsqueeze(1), d * t.unsqueeze(1), 0.0)
        torch._foreach_add_([images[i] for i in alive], [update[i].view_as(images[i]) for i in alive])


class TorchRows(BatchedRows):
    """The same operations row by row, with the very calls torch's LBFGS makes for one
    image (`dot`, `add_(..., alpha=)`), so that on the CPU each image rounds exactly as in
    its own run: L-BFGS grows a last-bit difference to 1e-3 within 15 steps where an
    image meets the clamp or a kink of the loss. A CPU loses nothing by the loop, and
    reading the scales with `tolist()` waits for no device."""

    @staticmethod
    def dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.dot(x, y) for x, y in zip(a, b)])

    @staticmethod
    def abs_sums(a: torch.Tensor) -> torch.Tensor:
        return torch.stack([row.abs().sum() for row in a])

    @staticmethod
    def add_scaled_(x: torch.Tensor, scale: torch.Tensor, y: torch.Tensor) -> None:
        for row, alpha, other in zip(x, scale.tolist(), y):
            row.add_(other, alpha=alpha)

    @staticmethod
    def move(images: list[torch.Tensor], alive: list[int], d: torch.Tensor, t: torch.Tensor, moves: torch.Tensor) -> None:
        t, moves = t.tolist(), moves.tolist()
        for i in alive:
            if moves[i]:
                images[i].add_(d[i].view_as(images[i]), alpha=t[i])


class BatchedLBFGS(BatchedStepper):
    """One L-BFGS per image of `variables` (same-shape float32 leaves), stepped together.

    `step(alive)` reads `.grad` of the images in `alive` and moves them; an image left out
    of `alive` (it diverged) is never touched again and cannot affect the others, as every
    operation is row-wise.
    """

    def __init__(self, variables: list[torch.Tensor], lr: float, history: int, ops: type[BatchedRows] | None = None):
        """`ops`: how rows are computed; default `TorchRows` on the CPU, `BatchedRows` elsewhere."""
        first = variables[0]
        if any(v.shape != first.shape for v in variables):
            raise ValueError("BatchedLBFGS steps images of one shape")
        self.variables, self.lr, self.history = list(variables), float(lr), int(history)
        self.ops = ops or (TorchRows if first.device.type == "cpu" else BatchedRows)
        rows, size = len(variables), first.numel()
        options = {"device": first.device, "dtype": first.dtype}
        self.steps = 0  # steps taken; every image of the group starts together
        self.rows = torch.arange(rows, device=first.device)
        # Zeros, so that a masked (k >= count) slot gives 0 * y = 0 and never 0 * garbage.
        self.s = torch.zeros(history, rows, size, **options)
        self.y = torch.zeros(history, rows, size, **options)
        self.rho = torch.zeros(history, rows, **options)
        self.position = torch.zeros(rows, dtype=torch.long, device=first.device)  # next slot to write
        self.count = torch.zeros(rows, dtype=torch.long, device=first.device)
        self.h_diag = torch.ones(rows, **options)
        self.d = self.t = self.previous_grad = None

    def _gradients(self, alive: list[int]) -> torch.Tensor:
        living = set(alive)
        return torch.stack([v.grad.reshape(-1) if i in living else torch.zeros_like(v).reshape(-1)
                            for i, v in enumerate(self.variables)])

    def _remember(self, grad: torch.Tensor) -> None:
        """Add each row's (s, y) pair where its curvature y.s is positive enough."""
        y = grad - self.previous_grad
        s = self.d * self.t.unsqueeze(1)
        ys = self.ops.dots(y, s)
        accept = ys > CURVATURE_FLOOR
        slots = self._slots(self.position)
        keep = accept.unsqueeze(1)
        for buffer, new in ((self.s, s), (self.y, y)):
            flat = buffer.view(-1, buffer.shape[-1])
            flat.index_copy_(0, slots, torch.where(keep, new, flat.index_select(0, slots)))
        rho = self.rho.view(-1)
        rho.index_copy_(0, slots, torch.where(accept, 1.0 / ys, rho.index_select(0, slots)))
        self.position = torch.where(accept, (self.position + 1) % self.history, self.position)
        self.count = torch.where(accept, (self.count + 1).clamp(max=self.history), self.count)
        self.h_diag = torch.where(accept, ys / self.ops.dots(y, y), self.h_diag)

    def _slots(self, ring_index: torch.Tensor) -> torch.Tensor:
        """Row b's entry at ring_index[b], as an index into the (history x B) flattened
        buffers: index_select on whole rows is a plain copy, where s[slot, rows] is not."""
        return ring_index * len(self.variables) + self.rows

    def _direction(self, grad: torch.Tensor, pairs: int) -> torch.Tensor:
        """-H g by the two-loop recursion, per row over its own pairs; recursion index k
        (0: the oldest) of row b is ring entry (position - count + k) mod history, and
        a row with count <= k has no pair k (its alpha is 0: the update adds 0 x 0)."""
        order = torch.arange(pairs, device=grad.device).unsqueeze(1)
        slots = self._slots((self.position - self.count + order) % self.history)  # (pairs, B), all indices at once
        has = order < self.count
        rhos = self.rho.view(-1)[slots]
        size = self.s.shape[-1]

        def pair(k: int) -> tuple[torch.Tensor, torch.Tensor]:
            return self.s.view(-1, size).index_select(0, slots[k]), self.y.view(-1, size).index_select(0, slots[k])

        q = grad.neg()
        alphas: list[torch.Tensor] = [None] * pairs
        for k in range(pairs - 1, -1, -1):
            s, y = pair(k)
            alphas[k] = torch.where(has[k], self.ops.dots(s, q) * rhos[k], 0.0)
            self.ops.add_scaled_(q, -alphas[k], y)
        r = q * self.h_diag.unsqueeze(1)
        for k in range(pairs):
            s, y = pair(k)
            beta = self.ops.dots(y, r) * rhos[k]
            self.ops.add_scaled_(r, torch.where(has[k], alphas[k] - beta, 0.0), s)
        return r

    @torch.no_grad()
    def step(self, alive: list[int]) -> None:
        grad = self._gradients(alive)
        self.steps += 1
        if self.steps == 1:
            d = grad.neg()
            inverse_norm = 1.0 / self.ops.abs_sums(grad)
            # Python's min(1.0, x) as torch computes it: 1 unless x < 1 (a nan gives 1).
            t = torch.where(inverse_norm < 1, inverse_norm, 1.0) * self.lr
        else:
            self._remember(grad)
            # At most one pair per earlier step: no row holds more than this many yet.
            d = self._direction(grad, min(self.history, self.steps - 1))
            t = torch.full_like(self.h_diag, self.lr)
        self.previous_grad, self.d, self.t = grad, d, t
        moves = ~(self.ops.dots(grad, d) > ASCENT_LIMIT)  # torch breaks (no move) on g.d > 1; a nan moves
        self.ops.move(self.variables, alive, d, t, moves)
