"""The contract checks of `stylekit.testing` (check_loss, check_backbone, check_optimizer,
check_scheduler, check_flow): every built-in component and the plugin packages of plugins/ pass them,
and a class that breaks the contract fails with a message that says what the contract wants
and what the class did."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from stylekit.contract import Backbone, LossTerm, Optimizer, Params, Scheduler, SequentialBackbone
from stylekit.builtins.flow import DIS
from stylekit.testing import (TinyBackbone, check_backbone, check_flow, check_loss, check_optimizer, check_scheduler,
                              tiny_registry)

CHECKS = {"loss": check_loss, "backbone": check_backbone, "optimizer": check_optimizer, "scheduler": check_scheduler,
          "flow": check_flow}
REGISTRY = tiny_registry()
#: Every registered component but VGG-19, whose check (a network of 20M weights, forward and
#: backward in two precisions) takes seconds: it runs with the slow tests; and the flow
#: providers that need a file to run (raft's weights, file's flows), which tests/test_flow.py
#: checks with the files they read.
COMPONENTS = [(kind, name) for kind, named in REGISTRY.components.items() for name in named
              if (kind, name) not in (("backbone", "vgg19"), ("flow", "raft"), ("flow", "file"))]


def test_the_plugin_packages_are_among_those_checked():
    packages = {REGISTRY.components[kind][name].plugin.package for kind, name in COMPONENTS}
    assert {"stylekit", "stylekit-mrf", "stylekit-wasserstein"} <= packages


@pytest.mark.parametrize("kind, name", COMPONENTS, ids=[f"{kind}-{name}" for kind, name in COMPONENTS])
def test_installed_components_keep_the_contract(kind, name):
    CHECKS[kind](REGISTRY.components[kind][name].cls)


@pytest.mark.slow  # a few seconds on two cores: VGG-19 forward and backward, in float32 and bf16
def test_vgg19_keeps_the_contract():
    check_backbone(REGISTRY.components["backbone"]["vgg19"].cls)


def test_checks_accept_params_and_layers():
    gram = REGISTRY.components["loss"]["gram"].cls
    check_loss(gram, {"normalization": "hw", "relative": True}, layers=["c1", "c3"])
    check_optimizer(REGISTRY.components["optimizer"]["lbfgs"].cls, {"history": 3, "line_search": "strong_wolfe"})
    check_scheduler(REGISTRY.components["scheduler"]["step"].cls, {"step_size": 2, "gamma": 0.5})
    check_backbone(TinyBackbone, TinyBackbone.Params(width=3))


def test_a_term_that_reads_the_step_is_checked_at_a_step():
    class RampIn(REGISTRY.components["loss"]["tv"].cls):
        """TV weighed in over the first 10 steps: 0 before the first step, as the engine's
        LossTerm.step is."""

        name = "ramp_in"

        def forward(self, features, image):
            return super().forward(features, image) * min(1.0, self.step / 10)

    check_loss(RampIn)  # its gradient is zero at step 0: a check that left the step unset would fail it


def test_the_callers_random_state_is_left_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    check_loss(REGISTRY.components["loss"]["tv"].cls)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- loss terms that break the contract


class Mean(LossTerm):
    """Mean squared features: a correct term the broken ones below change one thing of."""

    name = "mean"
    target_images = frozenset({"content"})

    def prepare(self, targets):
        self.targets = {name: targets.content[name].float() for name in self.layers}

    def forward(self, features, image):
        return self.weighted_sum(lambda name: ((features[name].float() - self.targets[name]) ** 2).mean())

    @classmethod
    def together(cls, terms):
        targets = {name: torch.cat([t.targets[name] for t in terms]) for name in terms[0].layers}
        return lambda features, images: terms[0].weighted_sum(
            lambda name: ((features[name].float() - targets[name]) ** 2).mean(dim=(1, 2, 3)))


class NotScalar(Mean):
    def forward(self, features, image):
        return super().forward(features, image).view(1)


class Number(Mean):
    def forward(self, features, image):
        return super().forward(features, image).item()


class Detached(Mean):
    def forward(self, features, image):
        return super().forward(features, image).detach()


class ReadsStyle(Mean):
    def prepare(self, targets):
        self.targets = {name: targets.styles[0][name] for name in self.layers}


class ChangesFeatures(Mean):
    def forward(self, features, image):
        value = super().forward(features, image)
        features["r1"].mul_(2)
        return value


class Float32Only(Mean):
    def prepare(self, targets):
        self.targets = {name: targets.content[name] for name in self.layers}  # kept in their own dtype

    def forward(self, features, image):
        weights = torch.ones(features["r1"].shape[1], 1)  # float32, against features that may be bf16
        return (features["r1"].flatten(2).transpose(1, 2) @ weights).mean()


class MixesTargets(Mean):
    @classmethod
    def together(cls, terms):
        return lambda features, images: terms[0].weighted_sum(
            lambda name: ((features[name].float() - terms[0].targets[name]) ** 2).mean(dim=(1, 2, 3)))


class SumsTogether(Mean):
    @classmethod
    def together(cls, terms):
        inner = Mean.together.__func__(cls, terms)
        return lambda features, images: inner(features, images).sum()


class NoSuper(Mean):
    def __init__(self, params, layers):
        self.settings = (params, layers)


LOSS_FAILURES = [
    (NotScalar, "forward(features, image) must return the term's unweighted value as a 0-dim float tensor - it "
                "returned a torch.float32 tensor of shape (1,)"),
    (Number, "forward(features, image) must return the term's unweighted value as a 0-dim float tensor - it returned float"),
    (Detached, "it carries no gradient (computed under torch.no_grad(), or from .detach() or .item()?)"),
    (ReadsStyle, "prepare(targets) raised KeyError: 'r1' - targets hold the features of its layers (r1, r2) for the "
                 "images its target_images names (content)"),
    (ChangesFeatures, "forward must leave the features as they are (every term shares them) - it changed them in place"),
    (Float32Only, "forward(features, image) with bf16 features raised RuntimeError"),
    (MixesTargets, "together(terms) must give each image the value its term's forward gives it alone - image 1 of 3"),
    (SumsTogether, "the function together(terms) returns must give one value per image, a (3,) tensor - it gave a "
                   "torch.float32 tensor of shape ()"),
    (NoSuper, "__init__ must call super().__init__(params, layers)"),
]


def test_bf16_failure_says_to_compute_in_float32():
    with pytest.raises(AssertionError, match=r"features may arrive in bf16: compute in float32 \(\.float\(\)\)"):
        check_loss(Float32Only)


def test_a_class_of_another_kind_is_refused():
    with pytest.raises(AssertionError, match="is checked as a loss, but it is not a subclass of stylekit.contract.LossTerm"):
        check_loss(TinyBackbone)


# ---------------------------------------------------------------- backbones that break the contract


class Strided(SequentialBackbone):
    """Unpadded stride-2 convolutions that do not say how large an image they need."""

    name = "strided"

    @classmethod
    def layer_names_for(cls, params):
        return ("s1", "relu", "s2", "s3")

    def __init__(self, params, weights="random"):
        super().__init__(OrderedDict(s1=nn.Conv2d(3, 4, 2, stride=2), relu=nn.ReLU(), s2=nn.Conv2d(4, 4, 2, stride=2),
                                     s3=nn.Conv2d(4, 4, 2, stride=2)))
        self.params = params


class StridedAndSaysSo(Strided):
    @classmethod
    def min_input_side_for(cls, params, layers):
        names = cls.layer_names_for(params)
        deepest = max(names.index(name) for name in layers)
        return 2 ** sum(1 for name in names[:deepest + 1] if name.startswith("s"))


class Trainable(StridedAndSaysSo):
    def __init__(self, params, weights="random"):
        super().__init__(params, weights)
        self.requires_grad_(True)


class Drops(StridedAndSaysSo):
    def features(self, image, layers):
        return {name: value for name, value in super().features(image, layers).items() if name != "s2"}


class Cut(StridedAndSaysSo):
    def features(self, image, layers):
        return {name: value.detach() for name, value in super().features(image, layers).items()}


class Constant(StridedAndSaysSo):
    def __init__(self, params, weights="random"):
        super().__init__(params, weights)
        self.shift = torch.full((1, 3, 1, 1), 0.5)  # a plain attribute: not cast with the network

    def normalize(self, image):
        return image - self.shift


class BatchStatistics(StridedAndSaysSo):
    def normalize(self, image):
        return image - image.mean()  # over the whole batch: an image's features depend on the others


BACKBONE_FAILURES = [
    (Strided, "features(image, {'s1'}) on a 1x1 image raised RuntimeError"),
    (Trainable, "a backbone is frozen: its parameters must not require gradients"),
    (Drops, "asked for {'s2'}, it returned []"),
    (Cut, "the gradient flows back through the features to each image (features(images, layers)) - the features carry "
          "no gradient"),
    (Constant, "features(images, layers) in bf16 raised RuntimeError"),
    (BatchStatistics, "each image's features do not depend on the other images stacked with it"),
]


def test_a_backbone_that_needs_more_than_it_says_is_told_to_say_so():
    with pytest.raises(AssertionError, match=r"min_input_side_for\(params, \{'s1'\}\) says an image of 1x1 suffices; "
                                             "return the fewest pixels on each side an image needs"):
        check_backbone(Strided)


# ---------------------------------------------------------------- optimizers that break the contract


class Descent(Optimizer):
    """Plain SGD, correct: the broken ones below change one thing of it."""

    name = "descent"

    class Params(Params):
        lr: float = 0.5

    def build(self, variables):
        return torch.optim.SGD(variables, lr=self.params.lr)


class Ascent(Descent):
    def build(self, variables):
        return torch.optim.SGD(variables, lr=self.params.lr, maximize=True)


class NotAnOptimizer(Descent):
    def build(self, variables):
        return lambda: None


class WantsClosure(Descent):
    def build(self, variables):
        return torch.optim.LBFGS(variables)


class Undercounts(Descent):
    def build(self, variables):
        return torch.optim.Adam(variables)


class Forgetful(Descent):
    """Momentum kept in an attribute, not in the optimizer's state: a resumed run loses it."""

    def build(self, variables):
        class Momentum(torch.optim.SGD):
            @torch.no_grad()
            def step(self, closure=None):
                for p in self.param_groups[0]["params"]:
                    self.velocity = 0.9 * getattr(self, "velocity", torch.zeros_like(p)) + p.grad
                    p.sub_(0.5 * self.velocity)

        return Momentum(variables, lr=self.params.lr)


class Stepper:
    def __init__(self, variables, lr, couple=False, touch_stopped=False):
        self.variables, self.lr, self.couple, self.touch_stopped = variables, lr, couple, touch_stopped

    @torch.no_grad()
    def step(self, alive, losses):
        grads = {k: self.variables[k].grad for k in alive}
        mean = sum(grads.values()) / len(grads)
        for k in (range(len(self.variables)) if self.touch_stopped else alive):
            grad = self.variables[k].grad if k not in grads else (mean if self.couple else grads[k])
            self.variables[k].sub_(self.lr * grad)


class Together(Descent):
    def build_together(self, variables):
        return Stepper(variables, self.params.lr)


class Coupled(Descent):
    def build_together(self, variables):
        return Stepper(variables, self.params.lr, couple=True)


class MovesTheStopped(Descent):
    def build_together(self, variables):
        return Stepper(variables, self.params.lr, touch_stopped=True)


OPTIMIZER_FAILURES = [
    (Ascent, "its steps lower a smooth convex loss"),
    (NotAnOptimizer, "build(variables) returns a torch.optim.Optimizer - it returned function"),
    (WantsClosure, "step() raised TypeError"),
    (Undercounts, "after 6 steps its state holds 2, and state_copies() says 0"),
    (Forgetful, "an optimizer restored from its state_dict() steps as the original does"),
    (Coupled, "build_together's stepper moves each image as the optimizer build returns moves it alone - at step 1, "
              "image 0 of 3"),
    (MovesTheStopped, "the stepper leaves an image not in alive as it is (it stopped) - step([0, 2]) moved image 1"),
]


def test_an_optimizer_that_needs_a_closure_is_told_to_say_so():
    with pytest.raises(AssertionError, match="set needs_closure = True if it needs a closure"):
        check_optimizer(WantsClosure)


# ---------------------------------------------------------------- schedulers that break the contract


class Halving(Scheduler):
    """Halves the rate every step, correct: the broken ones below change one thing of it."""

    name = "halving"

    def build(self, optimizer, total_steps):
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.5)


class Plain(Halving):
    def build(self, optimizer, total_steps):
        return lambda: 0.5


class Negative(Halving):
    def build(self, optimizer, total_steps):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: 1 - done)


class Counting(Halving):
    """Counts its steps in a closure: a scheduler rebuilt and restored starts counting again."""

    def build(self, optimizer, total_steps):
        calls = [0]

        def factor(done):
            calls[0] += 1
            return 0.5 ** calls[0]

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Crashes(Halving):
    def build(self, optimizer, total_steps):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=total_steps // 2)


SCHEDULER_FAILURES = [
    (Plain, "build(optimizer, total_steps) returns a torch LR scheduler (with step() and state_dict()) or None - it "
            "returned function"),
    (Negative, "the learning rate stays a finite number >= 0 - before step 3 of 10 it is -0.5"),
    (Counting, "a scheduler restored from its state_dict() goes on as the original does"),
    (Crashes, "step() of the scheduler, after optimizer step 1 of 1 raised ZeroDivisionError"),
]


# ---------------------------------------------------------------- flow providers that break the contract
# Each changes one thing of DIS, which keeps the contract.


class Motionless(DIS):
    def flow(self, source, target, pair):
        return torch.zeros(1, 2, *source.shape[-2:])


class Swapped(DIS):
    def flow(self, source, target, pair):
        return super().flow(source, target, pair).flip(1)


class Holed(DIS):
    def flow(self, source, target, pair):
        flow = super().flow(source, target, pair)
        flow[0, 0, 3, 3] = float("nan")
        return flow


class Flat(DIS):
    def flow(self, source, target, pair):
        return super().flow(source, target, pair)[0]


class Greys(DIS):
    def flow(self, source, target, pair):
        source[:, 1:] = source[:, :1]  # grey in place, the frames stylekit keeps with it
        return super().flow(source, target, pair)


class Crashing(DIS):
    def flow(self, source, target, pair):
        return super().flow(source, target[..., ::2, ::2], pair)  # frames of two sizes: OpenCV refuses


FLOW_FAILURES = [
    (Motionless, "finds where a texture moved: (2, 1) pixels (right, down) everywhere, within a median error of 0.5 - "
                 "its median error is 2.24 (its median flow (0, 0))"),
    (Swapped, "its median flow (1, 2)) - channel 0 is the motion to the right, channel 1 down, from source to target"),
    (Holed, "returns a (1, 2, H, W) float tensor of finite values, H and W the frames' - it returned 1 non-finite "
            "values (NaN or infinity) among its 6144"),
    (Flat, "it returned a tensor of shape (2, 48, 64), not (1, 2, 48, 64) as the frames are"),
    (Greys, "leaves the frames as they are (stylekit uses them again) - it changed them - work on a copy"),
    (Crashing, "flow(source, target, FramePair(source=0, target=1, frames_dir=None)) raised error: OpenCV"),
]


# ---------------------------------------------------------------- each failure, with what it says

FAILURES = [*(("loss", cls, said) for cls, said in LOSS_FAILURES),
            *(("backbone", cls, said) for cls, said in BACKBONE_FAILURES),
            *(("optimizer", cls, said) for cls, said in OPTIMIZER_FAILURES),
            *(("scheduler", cls, said) for cls, said in SCHEDULER_FAILURES),
            *(("flow", cls, said) for cls, said in FLOW_FAILURES)]
#: What each broken class changes one thing of: it keeps the contract.
KEEPS = {"loss": [Mean], "backbone": [StridedAndSaysSo], "optimizer": [Descent, Together], "scheduler": [Halving],
         "flow": [DIS]}


@pytest.mark.parametrize("kind", KEEPS)
def test_the_classes_the_broken_ones_change_keep_the_contract(kind):
    for cls in KEEPS[kind]:
        CHECKS[kind](cls)


@pytest.mark.parametrize("kind, cls, said", FAILURES, ids=[f"{kind}-{cls.__name__}" for kind, cls, _ in FAILURES])
def test_a_class_that_breaks_the_contract_is_told_what_it_wants(kind, cls, said):
    with pytest.raises(AssertionError) as caught:
        CHECKS[kind](cls)
    assert str(caught.value).startswith(f"{kind} '{cls.name}' ({cls.__name__}): ")
    assert said in str(caught.value)
