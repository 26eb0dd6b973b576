"""Checks that a component class keeps the contract of its kind, by running it on the CPU
the way the engine does: for plugin authors' tests (`stylekit.testing.check_loss` and the
others re-export these) and for stylekit's own.

Each check builds the component, calls every method the engine calls, with what the engine
passes, and asserts on what comes back. A failure is an `AssertionError` whose message
names the class, says what the contract wants and what the class did; an exception raised
by the class's own code is chained to it, so pytest shows its traceback too.

Tolerances: where two computations that should agree are compared (a loss's `together`
against its `forward`, an optimizer's `build_together` against `build`, an image's
features stacked with another against alone, a truncated backbone's against the whole),
they differ only in the order of float32 sums. Over the few thousand elements of these
small images that moves a result by about 1e-6 of its size; the checks allow 1e-4 of the
largest magnitude, while a real mistake (another image's target, a term left out, a
coupling between images) is off by a large fraction of it.
"""

from stylekit.component_checks.backbone import check_backbone
from stylekit.component_checks.flow import check_flow
from stylekit.component_checks.loss import check_loss
from stylekit.component_checks.steppers import check_optimizer, check_scheduler

__all__ = ["check_backbone", "check_flow", "check_loss", "check_optimizer", "check_scheduler"]
