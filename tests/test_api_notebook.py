"""The API as a notebook uses it: a Result shown in a cell, the common settings as keyword
arguments, a callback that raises KeyboardInterrupt, and a run stopped in an early stage."""

import io
import json
import signal
import sys
import types

import pytest
import torch

from PIL import Image

import stylekit
from stylekit.testing import TINY_LOSSES, tiny_registry, write_recipe


def test_a_result_shows_as_one_line_and_as_its_image(stylekit_recipe):
    result = stylekit.stylize(stylekit.load(stylekit_recipe, {"run.steps": 2}, registry=tiny_registry()))
    shown = repr(result)
    # A line that says how the run ended, not the tensor and history the dataclass repr dumped.
    assert shown.startswith("<Result finished: 2/2 steps, 64x48, ") and shown.endswith(" s>")
    assert len(shown) < 100 and "tensor" not in shown
    png = result._repr_png_()
    assert png.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(png)).tobytes() == result.image.tobytes()


SETTINGS = [("steps", "run.steps", 2), ("width", "output.width", 40), ("strength", "strength", 0.5),
            ("seed", "run.seed", 7), ("device", "run.device", "cpu")]


@pytest.mark.parametrize("name, key, value", SETTINGS)
def test_each_keyword_setting_is_its_override(stylekit_recipe, name, key, value):
    by_keyword = stylekit.load(stylekit_recipe, registry=tiny_registry(), **{name: value})
    by_override = stylekit.load(stylekit_recipe, {key: value}, registry=tiny_registry())
    assert by_keyword.recipe == by_override.recipe and by_keyword.raw == by_override.raw
    assert by_keyword.recipe != stylekit.load(stylekit_recipe, registry=tiny_registry()).recipe or name == "device"


def test_stylize_takes_the_settings_for_a_plan_as_its_overrides(stylekit_recipe):
    plan = stylekit.load(stylekit_recipe, registry=tiny_registry())
    by_keyword = stylekit.stylize(plan, steps=2, width=40, seed=3, strength=2.0)
    by_override = stylekit.stylize(plan, overrides={"run.steps": 2, "output.width": 40, "run.seed": 3, "strength": 2.0})
    assert by_keyword.steps_done == 2 and by_keyword.image.width == 40
    assert torch.equal(by_keyword.tensor, by_override.tensor)
    assert by_keyword.record["recipe"] == by_override.record["recipe"]


def test_a_setting_given_twice_is_refused_and_an_unknown_one_is_a_type_error(stylekit_recipe):
    with pytest.raises(stylekit.UserError, match=r"^steps: steps=2 and overrides\['run.steps'\] both set run.steps"):
        stylekit.load(stylekit_recipe, {"run.steps": 3}, steps=2, registry=tiny_registry())
    with pytest.raises(stylekit.UserError, match=r"both set run.seed - give one of them"):  # a table that holds it
        stylekit.stylize(stylekit_recipe, overrides={"run": {"seed": 1}}, seed=2, registry=tiny_registry())
    with pytest.raises(TypeError, match="stepz"):
        stylekit.load(stylekit_recipe, stepz=2, registry=tiny_registry())
    with pytest.raises(TypeError, match="stepz"):
        stylekit.stylize(stylekit_recipe, stepz=2, registry=tiny_registry())


def test_a_callback_that_raises_keyboard_interrupt_ends_the_run_as_ctrl_c_does(stylekit_recipe, tmp_path):
    plan = stylekit.load(stylekit_recipe, {"run.steps": 5, "run.seed": 1}, registry=tiny_registry())
    checkpoint = tmp_path / "run.checkpoint.pt"

    def interrupt(info):
        if info.step == 3:
            raise KeyboardInterrupt

    result = stylekit.stylize(plan, callback=interrupt, checkpoint=checkpoint)
    stopped = stylekit.stylize(plan, callback=lambda info: info.step == 3 and info.stop())
    assert result.status == "interrupted" and result.record["status"] == "interrupted" and result.steps_done == 3
    assert result.signal == signal.SIGINT
    assert torch.equal(result.tensor, stopped.tensor)  # the image of the step that finished
    assert checkpoint.is_file()
    assert stylekit.stylize(plan, checkpoint=checkpoint, resume=True).steps_done == 5


def test_a_run_stopped_in_an_early_stage_says_which_stage_its_image_is_from(tmp_path):
    recipe = write_recipe(tmp_path, TINY_LOSSES + "\n[[stage]]\nwidth = 32\nsteps = 3\n\n[[stage]]\nwidth = 64\nsteps = 2\n")
    plan = stylekit.load(recipe, registry=tiny_registry())
    early = stylekit.stylize(plan, callback=lambda info: info.step == 2 and info.stop())
    assert (early.stage, early.stages, early.image.size) == (1, 2, (32, 24))
    assert early.record["stage"] == 1 and early.record["stages"] == 2 and early.record["size"] == [24, 32]
    assert "32x24 (stage 1 of 2)" in repr(early)
    saved = json.loads(early.save(tmp_path / "early.png").with_suffix(".json").read_text())
    assert saved["stage"] == 1 and saved["stages"] == 2
    done = stylekit.stylize(plan)
    assert (done.stage, done.record["stage"], done.record["stages"], done.image.size) == (2, 2, 2, (64, 48))
    assert "stage" not in repr(done)


TWO_STAGES = TINY_LOSSES + "\n[[stage]]\nwidth = 32\nsteps = 3\n\n[[stage]]\nwidth = 64\nsteps = 2\n"


def test_progress_shows_one_bar_redrawn_in_place_with_stage_steps_and_losses(tmp_path, capsys):
    plan = stylekit.load(write_recipe(tmp_path, TWO_STAGES), registry=tiny_registry())
    seen = []
    result = stylekit.stylize(plan, progress=True, callback=lambda info: seen.append(info.step))
    err = capsys.readouterr().err
    assert result.status == "finished" and seen == [1, 2, 3, 4, 5]  # the callback still runs
    assert "\r" in err and "5/5" in err and "stage 1/2" in err and "stage 2/2" in err
    last = err.replace("\r", "\n").strip().splitlines()[-1]  # as the bar was left
    assert last.startswith("stage 2/2 100%") and "total " in last and "content " in last and "gram " in last


def test_progress_by_default_in_a_notebook_or_on_a_terminal_not_when_piped(stylekit_recipe, monkeypatch, capsys):
    plan = stylekit.load(stylekit_recipe, {"run.steps": 2}, registry=tiny_registry())
    stylekit.stylize(plan)
    assert capsys.readouterr().err == ""  # pytest's capture is no terminal: a pipe or a log

    class Kernel:  # what IPython.get_ipython() returns in a Jupyter kernel: a shell with a kernel
        kernel = object()

    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=Kernel))
    stylekit.stylize(plan)
    assert "2/2" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))  # plain Python
    stylekit.stylize(plan)
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    stylekit.stylize(plan)
    shown = terminal.getvalue()
    assert "2/2" in shown
    stylekit.stylize(plan, progress=False)
    assert terminal.getvalue() == shown


def test_progress_is_closed_when_the_callback_interrupts_and_a_wrong_value_is_refused(stylekit_recipe, capsys):
    plan = stylekit.load(stylekit_recipe, {"run.steps": 5}, registry=tiny_registry())

    def interrupt(info):
        if info.step == 2:
            raise KeyboardInterrupt

    assert stylekit.stylize(plan, callback=interrupt, progress=True).status == "interrupted"
    err = capsys.readouterr().err
    assert "2/5" in err and err.endswith("\n")  # closed: the next output starts on a line of its own
    with pytest.raises(stylekit.UserError, match=r"^progress: must be True, False or None .*not str"):
        stylekit.stylize(plan, progress="yes")
