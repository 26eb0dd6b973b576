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

One rule is added to torch's, the probe guard (`stylekit.builtins.optimizers.GuardedLBFGS`
has the why): while a row's last step was a short probe (its first step, or a re-probe; no
pixel moved by PROBE_LIMIT or more) its pair is kept only when the loss changed over the
probe as the two gradients say (`consistent`); otherwise the row keeps no pair and probes
again, PROBE_GROWTH times longer, where torch would step by -lr g with no curvature known.
For that `step` is given each image's loss, and each row keeps its point and loss before
its latest step: memory is 2 x history + 4 image-sized tensors per image. So does the step
back: a row whose loss more than doubled (RISE_LIMIT) over its latest step returns to
where that step started and steps STEP_BACK times as far, making no pair.

How a row's sums are computed is apart (`BatchedRows` on a GPU, `TorchRows` on the CPU,
where each image comes out bit for bit as with `GuardedLBFGS` alone, which is torch's LBFGS
wherever the guard does not act).
"""

from __future__ import annotations

import torch

from stylekit.contract.components import BatchedStepper

#: torch's LBFGS keeps a pair only when y.s is above this (lbfgs.py, "if ys > 1e-10").
CURVATURE_FLOOR = 1e-10
#: torch's `gtd > -tolerance_change` with the tolerance_change = -1 that stylekit uses.
ASCENT_LIMIT = 1.0
#: A probe (the first step, -g scaled to an L1 length of lr, or a re-probe) that moves no
#: pixel by this much or more is guarded: rounding can swamp what so short a step measures
#: (bf16 resolves the image's values near 1 only to 2^-8, and torch's first probe moves a
#: 150x150 image's pixels by 3e-4 at most). 1/32 is 8 bf16 steps near 1: well above that
#: resolution, and still a small change to an image in [0, 1].
PROBE_LIMIT = 1 / 32
#: Each re-probe is this many times longer than the last: from torch's first probe to the
#: bf16 resolution in two or three, and never more than this factor past the length that
#: first measures the loss reliably.
PROBE_GROWTH = 8.0
#: A probe's pair is kept when the loss's change over it is within this fraction of what
#: its two gradients say (the trapezoid rule, exact for a quadratic): measured in fp32 it is
#: within 2%; in bf16, below the input's resolution, the loss changes by 13 to 46% of that
#: (the image's values round to a staircase), above it by 96 to 102%.
PROBE_AGREEMENT = 0.25
#: A step after which the loss is more than this many times what it was is taken back
#: (`GuardedLBFGS` has the why). L-BFGS with a curvature it has measured does not raise a
#: smooth loss much; doubling it says the step went far past where that curvature holds.
RISE_LIMIT = 2.0
#: ... and tried again this many times as long, along the same direction, until the loss
#: no longer more than doubles (it cannot, as the step shrinks toward the point it left).
STEP_BACK = 0.25


def consistent(loss_before: torch.Tensor, loss_after: torch.Tensor, grad_before: torch.Tensor,
               grad_after: torch.Tensor, moved: torch.Tensor, dots) -> torch.Tensor:
    """Per row: did the loss change over the step `moved` (where the images really went,
    after the clamp) as the gradients at both ends say? For a quadratic the change is
    exactly (g0 + g1).moved / 2; a smooth loss over a short step departs from that by far
    less than PROBE_AGREEMENT, a loss rounded to a staircase by much more. `dots` is how a
    row's dot products are computed (`BatchedRows.dots`)."""
    predicted = dots(grad_before + grad_after, moved) * 0.5
    return (loss_after - loss_before - predicted).abs() <= PROBE_AGREEMENT * predicted.abs()


def overshot(loss_before: torch.Tensor, loss_after: torch.Tensor) -> torch.Tensor:
    """Per row: did the latest step more than multiply a positive loss by RISE_LIMIT? (A NaN
    loss did not: it is left to the run's divergence check.)"""
    return (loss_before > 0) & (loss_after > RISE_LIMIT * loss_before)


def short_probe(t: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Per row: does the step t x -grad move every pixel by less than PROBE_LIMIT?"""
    return t * grad.abs().amax(1) < PROBE_LIMIT


def longer_probe(t: torch.Tensor, grad: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the re-probe after a short probe of step length t: the step length along
    -grad, PROBE_GROWTH x t but no pixel moved by more than PROBE_LIMIT and t no longer
    than lr (what torch steps with no curvature known); and whether it is short again
    (then its own pair is guarded in turn; a zero gradient ends the probing at lr)."""
    grown = t * PROBE_GROWTH
    largest = grad.abs().amax(1)
    length = torch.minimum(torch.minimum(grown, PROBE_LIMIT / largest), torch.full_like(grown, lr))
    return length, (grown * largest < PROBE_LIMIT) & (grown < lr)


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
    """One guarded L-BFGS per image of `variables` (same-shape float32 leaves), stepped
    together.

    `step(alive, losses)` reads `.grad` of the images in `alive` and moves them; an image
    left out of `alive` (it diverged) is never touched again and cannot affect the others,
    as every operation is row-wise.
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
        # The probe guard's: whether a row's last step was a short probe, and each row's
        # point and loss before its latest step (where its probe started).
        self.probing = torch.zeros(rows, dtype=torch.bool, device=first.device)
        self.previous_point = torch.zeros(rows, size, **options)
        self.previous_loss = torch.zeros(rows, **options)

    def _gradients(self, alive: list[int]) -> torch.Tensor:
        living = set(alive)
        return torch.stack([v.grad.reshape(-1) if i in living else torch.zeros_like(v).reshape(-1)
                            for i, v in enumerate(self.variables)])

    def _points(self, alive: list[int], losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's image (flat) and loss; zeros for the rows not in `alive`."""
        points = torch.stack([v.detach().reshape(-1) for v in self.variables])
        values = torch.zeros_like(self.previous_loss)
        values[alive] = losses.to(values.dtype)
        return points, values

    def _remember(self, grad: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """Add each row's (s, y) pair where it is `allowed` and its curvature y.s is
        positive enough; returns where a pair was added."""
        y = grad - self.previous_grad
        s = self.d * self.t.unsqueeze(1)
        ys = self.ops.dots(y, s)
        accept = (ys > CURVATURE_FLOOR) & allowed
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
        return accept

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
    def step(self, alive: list[int], losses: torch.Tensor) -> None:
        """`losses[k]`: the loss of image alive[k] where its gradient was taken."""
        grad = self._gradients(alive)
        point, loss = self._points(alive, losses)
        self.steps += 1
        if self.steps == 1:
            d = grad.neg()
            inverse_norm = 1.0 / self.ops.abs_sums(grad)
            # Python's min(1.0, x) as torch computes it: 1 unless x < 1 (a nan gives 1).
            t = torch.where(inverse_norm < 1, inverse_norm, 1.0) * self.lr
            self.probing = short_probe(t, grad)
            back = torch.zeros_like(self.probing)
        else:
            # A row whose latest step more than doubled its loss steps back: it returns to
            # where that step started and keeps all it had there.
            back = ~self.probing & overshot(self.previous_loss, loss)
            # A row after a short probe keeps its pair only if the loss agrees with it.
            agrees = consistent(self.previous_loss, loss, self.previous_grad, grad, point - self.previous_point,
                                self.ops.dots)
            kept = self._remember(grad, (~self.probing | agrees) & ~back)
            # At most one pair per earlier step: no row holds more than this many yet.
            d = self._direction(grad, min(self.history, self.steps - 1))
            # A probing row whose pair was not kept holds none: its d is -g (H_diag 1), and
            # it probes again, longer, where torch would step by lr.
            again = self.probing & ~kept
            longer, short = longer_probe(self.t, grad, self.lr)
            t = torch.where(again, longer, self.lr)
            self.probing = again & short
            keep = back.unsqueeze(1)
            d, t = torch.where(keep, self.d, d), torch.where(back, self.t * STEP_BACK, t)
            point, loss = torch.where(keep, self.previous_point, point), torch.where(back, self.previous_loss, loss)
            grad = torch.where(keep, self.previous_grad, grad)
            for i in back.nonzero().flatten().tolist():
                self.variables[i].copy_(self.previous_point[i].view_as(self.variables[i]))
        self.previous_point.copy_(point)
        self.previous_loss.copy_(loss)
        self.previous_grad, self.d, self.t = grad, d, t
        # torch breaks (no move) on g.d > 1; a nan moves; a row stepping back always does.
        moves = ~(self.ops.dots(grad, d) > ASCENT_LIMIT) | back
        self.ops.move(self.variables, alive, d, t, moves)
