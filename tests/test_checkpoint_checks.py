"""A checkpoint is checked against the plan before a run resumes from it
(stylekit/run/checkpoint_checks.py): a hand-edited or damaged one gets one message naming the
file and what is wrong (exit 2), never a traceback and never a resume that does not add up."""

import pytest
import torch

import stylekit
from stylekit.run import checkpoints
from stylekit.testing import TINY_LOSSES, TINY_RECIPE_HEAD, run_cli, tiny_registry, write_recipe

OPTIMIZERS = {
    "lbfgs": ('[optimizer]\nname = "lbfgs"\n[scheduler]\nname = "cosine"\n', ""),
    "adam": ('[optimizer]\nname = "adam"\n', "ema_decay = 0.5\n"),  # with its moving average
}


@pytest.fixture(scope="module", params=sorted(OPTIMIZERS))
def made(request, tmp_path_factory):
    """(optimizer, recipe, the checkpoint of a run stopped at step 3 of 5, plan) for each optimizer."""
    folder = tmp_path_factory.mktemp(request.param)
    body, run = OPTIMIZERS[request.param]
    recipe = write_recipe(folder, TINY_LOSSES + body, head=TINY_RECIPE_HEAD.replace("[run]\n", "[run]\n" + run))
    plan = stylekit.load(recipe, registry=tiny_registry())
    checkpoint = folder / "made.pt"
    stylekit.stylize(plan, callback=lambda info: info.step == 3 and info.stop(), checkpoint=checkpoint)
    return request.param, recipe, checkpoint, plan


def changed(made, change):
    """The checkpoint written after `change(state)`, where `stylekit run --resume` reads it."""
    _, recipe, original, _ = made
    state = torch.load(original, weights_only=True)
    change(state)
    checkpoint = recipe.parent / "out" / "result.checkpoint.pt"
    checkpoint.parent.mkdir(exist_ok=True)
    torch.save(state, checkpoint)
    return checkpoint


def refusal(made, change) -> str:
    """The one problem `checkpoints.load` (which `stylekit run --resume` calls) says."""
    checkpoint = changed(made, change)
    with pytest.raises(stylekit.UserError) as caught:
        checkpoints.load(checkpoint, made[3])
    [problem] = caught.value.problems
    assert problem.file == str(made[1]) and problem.message.startswith(f"checkpoint {checkpoint}: ")
    assert problem.message.endswith("- it was changed or damaged after stylekit wrote it; delete it and run without --resume")
    return problem.message


def keep(state):
    pass


def test_an_unchanged_checkpoint_resumes_and_a_changed_one_is_refused_at_once(made):
    recipe = made[1]
    changed(made, keep)
    status, _, err = run_cli("run", str(recipe), "--resume")
    assert status == 0 and "at step 3/5" in err, err
    checkpoint = changed(made, _set(["history"], lambda h: h * 50))  # was: resuming at step 150/5
    status, _, err = run_cli("run", str(recipe), "--resume")
    assert status == 2 and err == (f"error: {recipe}: checkpoint {checkpoint}: its loss history has 150 steps, but it "
                                   "is at step 3 of the run - it was changed or damaged after stylekit wrote it; delete "
                                   "it and run without --resume\n")


def _set(path, value):
    def change(state):
        *parents, last = path
        target = state
        for key in parents:
            target = target[key]
        if value is DROP:
            del target[last]
        else:
            target[last] = value(target[last]) if callable(value) else value
    return change


DROP = object()

# (what is changed, the change, the words of the message), for both optimizers
CHANGES = [
    ("history 50 times too long", _set(["history"], lambda h: h * 50), "its loss history has 150 steps, but it is at step 3 of the run"),
    ("history row short", _set(["history", 1], lambda row: row[:2]), "step 2 of its loss history is not a list of 4 numbers"),
    ("history a number", _set(["history"], 3), "'history' is int, not a list"),
    ("history missing", _set(["history"], DROP), "'history' is missing"),
    ("stage out of range", _set(["stage"], 7), "'stage' is 7, but the recipe has 1 stage(s) (0 to 0)"),
    ("stage a text", _set(["stage"], "0"), "'stage' is text, not a whole number"),
    ("step past the stage", _set(["loop", "step"], 250), "it is at step 250 of stage 1, which has 5 steps"),
    ("step a float", _set(["loop", "step"], 3.0), "'loop.step' is float, not a whole number"),
    ("loop a list", _set(["loop"], []), "'loop' is a list, not a table"),
    ("image reshaped", _set(["loop", "image"], lambda t: t.reshape(1, 3, 64, 48)),
     "'loop.image' is a tensor of torch.float32 shaped (1, 3, 64, 48), not this run's image at stage 1 (float, (1, 3, 48, 64))"),
    ("image of integers", _set(["loop", "image"], lambda t: t.long()), "'loop.image' is a tensor of torch.int64 shaped"),
    ("image with NaN", _set(["loop", "image"], lambda t: t * float("nan")), "'loop.image' holds NaN or infinite values"),
    ("image missing", _set(["loop", "image"], DROP), "'loop.image' is missing"),
    ("rng of floats", _set(["rng"], lambda t: t.float()), "'rng' is a tensor of torch.float32 shaped (5056,), not the random state"),
    ("rng a list", _set(["rng"], [1, 2]), "'rng' is a list, not a tensor"),
    ("seconds negative", _set(["seconds"], -1.0), "'seconds' is -1.0, not a time"),
    ("optimizer a number", _set(["loop", "optimizer"], 3), "'loop.optimizer' is int, not a table"),
    ("optimizer groups gone", _set(["loop", "optimizer", "param_groups"], DROP), "'loop.optimizer' lacks its 'state' and 'param_groups'"),
    ("optimizer lr a text", _set(["loop", "optimizer", "param_groups", 0, "lr"], "fast"),
     "'loop.optimizer.param_groups[0].lr' is text, not a number"),
    ("optimizer state emptied", _set(["loop", "optimizer", "state"], {}),
     "'loop.optimizer.state' is empty, though the optimizer keeps a state after a step"),
    ("optimizer state of another parameter", _set(["loop", "optimizer", "state"], lambda s: {7: s[0]}),
     "'loop.optimizer.state' has an entry for 7, which is no parameter of its groups"),
]
PER_OPTIMIZER = {
    "lbfgs": [
        ("direction dropped", _set(["loop", "optimizer", "state", 0, "d"], DROP), "'loop.optimizer.state[0]' lacks 'd'"),
        ("history entry reshaped", _set(["loop", "optimizer", "state", 0, "old_dirs", 0], lambda t: t[:10]),
         "'loop.optimizer.state[0].old_dirs[0]' is a tensor of torch.float32 shaped (10,), not a tensor of torch.float32 "
         "shaped (9216,) (the image's size)"),
        ("history lists of two lengths", _set(["loop", "optimizer", "state", 0, "ro"], lambda r: r[:1]),
         "'loop.optimizer.state[0].old_dirs' has 2 entries but 'ro' has 1"),
        ("iterations a tensor", _set(["loop", "optimizer", "state", 0, "n_iter"], torch.zeros(3)),
         "'loop.optimizer.state[0].n_iter' is a tensor of torch.float32 shaped (3,), not a number"),
        ("scheduler state gone", _set(["loop", "scheduler"], None), "'loop.scheduler' is None, but the recipe's scheduler needs its state"),
        ("scheduler count a text", _set(["loop", "scheduler", "last_epoch"], "x"), "'loop.scheduler.last_epoch' is text, not a number"),
        ("scheduler count off", _set(["loop", "scheduler", "last_epoch"], 40),
         "'loop.scheduler.last_epoch' is 40, but the run is at step 3 of its stage"),
        ("history size edited", _set(["loop", "optimizer", "param_groups", 0, "history_size"], 0),
         "'loop.optimizer.param_groups[0].history_size' is 0, but the recipe's optimizer has 100"),
        ("schedule length edited", _set(["loop", "scheduler", "T_max"], 0),
         "'loop.scheduler.T_max' is 0, but the recipe's scheduler has 5"),
        ("a scale that is infinite", _set(["loop", "optimizer", "state", 0, "H_diag"], torch.tensor(float("inf"))),
         "'loop.optimizer.state[0].H_diag' is inf, not a finite number"),
        ("a learning rate that is NaN", _set(["loop", "optimizer", "param_groups", 0, "lr"], float("nan")),
         "'loop.optimizer.param_groups[0].lr' is nan, not a finite number"),
    ],
    "adam": [
        ("moment reshaped", _set(["loop", "optimizer", "state", 0, "exp_avg"], lambda t: t.flatten()),
         "'loop.optimizer.state[0].exp_avg' is a tensor of torch.float32 shaped (9216,), not a tensor of torch.float32 "
         "shaped (1, 3, 48, 64) (the image's size)"),
        ("betas a number", _set(["loop", "optimizer", "param_groups", 0, "betas"], 0.9),
         "'loop.optimizer.param_groups[0].betas' is float, not a list"),
        ("average dropped", _set(["loop", "average"], None), "'loop.average' is missing, and run.ema_decay needs it"),
        ("a moment with NaN", _set(["loop", "optimizer", "state", 0, "exp_avg_sq"], lambda t: t * float("nan")),
         "'loop.optimizer.state[0].exp_avg_sq' holds NaN or infinite values"),
    ],
}


@pytest.mark.parametrize("what, change, said", CHANGES, ids=[c[0] for c in CHANGES])
def test_a_changed_checkpoint_is_refused_with_what_is_wrong(made, what, change, said):
    assert said in refusal(made, change)


@pytest.mark.parametrize("made, what, change, said",
                         [(name, *case) for name, cases in sorted(PER_OPTIMIZER.items()) for case in cases],
                         ids=[f"{name}-{case[0]}" for name, cases in sorted(PER_OPTIMIZER.items()) for case in cases],
                         indirect=["made"])
def test_a_changed_optimizer_state_is_refused_with_what_is_wrong(made, what, change, said):
    assert said in refusal(made, change)


def test_a_checkpoint_of_a_plugin_optimizer_is_checked_as_the_builtins_are(tmp_path):
    # The reference states come from stepping the components, whoever wrote them: SGD with
    # momentum (a state per parameter) stands in for an optimizer stylekit knows nothing of.
    recipe = write_recipe(tmp_path, TINY_LOSSES + '[optimizer]\nname = "sgd"\n[optimizer.params]\nmomentum = 0.9\n')
    plan = stylekit.load(recipe, registry=tiny_registry())
    checkpoint = tmp_path / "out" / "result.checkpoint.pt"
    stylekit.stylize(plan, callback=lambda info: info.step == 2 and info.stop(), checkpoint=checkpoint)
    assert run_cli("validate", str(recipe))[0] == 0
    state = torch.load(checkpoint, weights_only=True)
    state["loop"]["optimizer"]["state"][0]["momentum_buffer"] = torch.zeros(2, 2)
    torch.save(state, checkpoint)
    with pytest.raises(stylekit.UserError, match=r"momentum_buffer' is a tensor of torch.float32 shaped \(2, 2\)"):
        stylekit.stylize(plan, checkpoint=checkpoint, resume=True)


@pytest.mark.parametrize("made", ["lbfgs"], indirect=True)
def test_an_lbfgs_checkpoint_of_the_version_before_the_step_back_resumes(made):
    # Before the step back, L-BFGS kept where its step started only while probing, as
    # 'probe_point'; a checkpoint without 'step_point' (or with the old name) still resumes.
    def earlier(state):
        entry = state["loop"]["optimizer"]["state"][0]
        entry["probe_point"] = entry.pop("step_point")
    for change in (_set(["loop", "optimizer", "state", 0, "step_point"], DROP), earlier):
        checkpoint = changed(made, change)
        assert checkpoints.load(checkpoint, made[3]) is not None
    status, _, err = run_cli("run", str(made[1]), "--resume")
    assert status == 0 and "at step 3/5" in err, err
