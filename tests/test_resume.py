"""Stopping and resuming: a run stopped at any step and resumed from its checkpoint ends
exactly where an uninterrupted run ends (CPU, fp32), with Adam and L-BFGS, across stages;
a real SIGINT leaves the image, the record and the checkpoint."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import stylekit
from stylekit.testing import TINY_LOSSES, tiny_registry, write_recipe

STAGES = "\n[[stage]]\nwidth = 32\nsteps = 4\n\n[[stage]]\nwidth = 64\nsteps = 5\n"


def final_image_and_losses(plan, **kwargs):
    """(the last float image the callback saw, the result) of a run."""
    seen = {}

    def keep(info):
        seen["image"] = info.image.clone()

    result = stylekit.stylize(plan, callback=keep, **kwargs)
    return seen["image"], result


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
@pytest.mark.parametrize("stop_at", [2, 6])  # in the first stage; in the second
def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path, optimizer, stop_at):
    body = TINY_LOSSES + f'[optimizer]\nname = "{optimizer}"\n[scheduler]\nname = "cosine"\n' + STAGES
    recipe = write_recipe(tmp_path, body)
    registry = tiny_registry()
    plan = stylekit.load(recipe, {"run.ema_decay": 0.5} if optimizer == "adam" else {}, registry=registry)
    whole_image, whole = final_image_and_losses(plan)

    checkpoint = tmp_path / "run.checkpoint.pt"
    stopped = stylekit.stylize(plan, callback=lambda info: info.step == stop_at and info.stop(), checkpoint=checkpoint)
    assert stopped.status == "stopped" and stopped.steps_done == stop_at and checkpoint.is_file()
    resumed_image, resumed = final_image_and_losses(plan, checkpoint=checkpoint, resume=True)

    assert resumed.status == "finished" and resumed.steps_done == plan.total_steps == 9
    assert (resumed_image - whole_image).abs().max() <= 1e-6
    assert torch.equal(resumed.tensor, whole.tensor)
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert all(abs(a[k] - b[k]) <= 1e-6 * max(1.0, abs(a[k])) for k in a)


def test_checkpoints_load_with_weights_only(tmp_path):
    recipe = write_recipe(tmp_path, TINY_LOSSES + '[optimizer]\nname = "lbfgs"\n')
    plan = stylekit.load(recipe, {"output.checkpoint_every": 2, "run.steps": 5}, registry=tiny_registry())
    checkpoint = tmp_path / "c.pt"
    stylekit.stylize(plan, checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)  # refuses anything that could run code
    assert state["stage"] == 0 and state["loop"]["step"] == 4  # the last multiple of 2 before the end
    assert state["loop"]["optimizer"]["state"][0]["old_dirs"], "L-BFGS history is kept"


def test_resume_refuses_a_checkpoint_of_another_recipe(tmp_path):
    recipe = write_recipe(tmp_path)
    registry = tiny_registry()
    checkpoint = tmp_path / "c.pt"
    stylekit.stylize(stylekit.load(recipe, registry=registry), callback=lambda i: i.stop(), checkpoint=checkpoint)
    other = stylekit.load(recipe, {"loss.1.weight": 5.0}, registry=registry)
    with pytest.raises(stylekit.UserError, match=r"different recipe \(changed: loss\[1\]\.weight from 1000000\.0 to 5\.0\)"):
        stylekit.stylize(other, checkpoint=checkpoint, resume=True)


def test_resume_without_a_checkpoint_says_how_to_start(stylekit_recipe):
    from stylekit.testing import run_cli

    status, _, err = run_cli("run", str(stylekit_recipe), "--resume")
    assert status == 2 and "no checkpoint to resume from" in err and "run without --resume" in err


DRIVER = textwrap.dedent("""
    import sys
    from stylekit.commands.cli import main
    from stylekit.testing import tiny_registry
    sys.exit(main(sys.argv[1:], registry=tiny_registry()))
""")


def test_sigint_in_a_subprocess_keeps_image_record_and_checkpoint(tmp_path):
    signum = signal.SIGINT
    recipe = write_recipe(tmp_path)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    command = [sys.executable, str(driver), "run", str(recipe), "--steps", "100000", "--set", "run.progress_every=1"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stderr:  # wait until the loop runs
        if line.startswith("step "):
            break
    proc.send_signal(signum)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signum, err
    out = tmp_path / "out"
    record = json.loads((out / "result.json").read_text())
    assert record["status"] == "interrupted" and 0 < record["steps_done"] < 100000
    assert (out / "result.png").is_file() and (out / "result.checkpoint.pt").is_file()
    assert f"at step {record['steps_done']} of 100000" in err and "--resume" in err and "Traceback" not in err
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary files left"

    # --resume from the command line: test_the_interrupt_message_gives_the_command_to_resume.


def test_sigterm_ends_the_step_and_exits_143(stylekit_recipe):
    """The same handler in-process: the signal arrives during step 3, the run ends after it."""
    from stylekit.commands import run as runner
    from stylekit.testing import run_cli

    def terminate_at_3(info):
        if info.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    original = runner.run_plan

    def with_terminate(plan, resume=False, stream=None, callbacks=(), command=None):
        return original(plan, resume, stream, [terminate_at_3], command)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "run_plan", with_terminate)
        status, _, err = run_cli("run", str(stylekit_recipe), "--steps", "50")
    assert status == 143, err
    record = json.loads((stylekit_recipe.parent / "out" / "result.json").read_text())
    assert record["status"] == "interrupted" and record["steps_done"] == 3
    assert "interrupted (SIGTERM) at step 3 of 50" in err
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "the handler is put back"


def test_resume_refuses_another_size_or_other_images(tmp_path):
    recipe = write_recipe(tmp_path)
    registry = tiny_registry()
    checkpoint = tmp_path / "c.pt"
    plan = stylekit.load(recipe, registry=registry)
    stylekit.stylize(plan, callback=lambda i: i.stop(), checkpoint=checkpoint)
    with pytest.raises(stylekit.UserError, match=r"changed: output\.width"):
        stylekit.stylize(stylekit.load(recipe, {"output.width": 32}, registry=registry), checkpoint=checkpoint, resume=True)
    from stylekit.testing import pattern

    with pytest.raises(stylekit.UserError, match=r"changed: .*the input images\)"):
        stylekit.stylize(plan, content=pattern(48, 64, "style"), checkpoint=checkpoint, resume=True)
    with pytest.raises(stylekit.UserError, match="resume=True needs checkpoint="):
        stylekit.stylize(plan, resume=True)


def test_the_interrupt_message_gives_the_command_to_resume(stylekit_recipe):
    from stylekit.commands import run as runner
    from stylekit.testing import run_cli

    original = runner.run_plan

    def interrupted(plan, resume=False, stream=None, callbacks=(), command=None):
        return original(plan, resume, stream, [lambda info: info.step == 2 and os.kill(os.getpid(), signal.SIGINT)], command)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "run_plan", interrupted)
        status, _, err = run_cli("run", str(stylekit_recipe), "--steps", "9", "--set", "output.width=32")
    assert status == 130
    command = f"stylekit run {stylekit_recipe} --steps 9 --set output.width=32 --resume"
    assert f"continue with `{command}`" in err
    status, _, err = run_cli(*command.split()[1:])
    assert status == 0, err
    assert json.loads((stylekit_recipe.parent / "out" / "result.json").read_text())["steps_done"] == 9


def test_a_checkpoint_from_before_stages_had_a_carry_resumes(tmp_path):
    # Checkpoints kept the recipe as written out then, without `carry`; the default it has
    # now ("image") is what those runs did, so they resume; a stage that carries the change
    # is another run.
    recipe = write_recipe(tmp_path, TINY_LOSSES + STAGES)
    registry = tiny_registry()
    plan = stylekit.load(recipe, registry=registry)
    checkpoint = tmp_path / "c.pt"
    stylekit.stylize(plan, callback=lambda info: info.step == 6 and info.stop(), checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    assert all("carry" not in stage for stage in state["recipe"]["stage"])  # kept as it was then
    assert stylekit.stylize(plan, checkpoint=checkpoint, resume=True).status == "finished"
    carrying = stylekit.load(recipe, {"stage.1.carry": "change"}, registry=registry)
    with pytest.raises(stylekit.UserError, match=r"different recipe \(changed: stage\[1\]\.carry\)"):
        stylekit.stylize(carrying, checkpoint=checkpoint, resume=True)
