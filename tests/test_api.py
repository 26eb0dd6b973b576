"""The Python API: recipes from files, text and dicts; images from paths, PIL images and
tensors; the returned image is the saved one; callbacks; divergence and failed writes."""

import errno
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import stylekit
from stylekit.contract.hookspecs import hookimpl
from stylekit.files.images import open_rgb, to_tensor
from stylekit.plugins.registry import PluginInfo
from stylekit.testing import TINY_LOSSES, TINY_RECIPE_HEAD, pattern, run_cli, tiny_registry, write_recipe


@pytest.mark.parametrize("mode", ["none", "luminance", "histogram"])
def test_the_returned_image_is_the_saved_image(stylekit_recipe, mode):
    plan = stylekit.load(stylekit_recipe, {"images.preserve_colors": mode}, registry=tiny_registry())
    result = stylekit.stylize(plan)
    saved = result.save()
    assert saved == plan.output and plan.output.with_suffix(".json").is_file()
    h, w = result.tensor.shape[-2:]
    assert torch.equal(to_tensor(open_rgb(str(saved)), (h, w)), result.tensor)
    assert result.image.tobytes() == Image.open(saved).convert("RGB").tobytes()


def test_the_cli_writes_what_the_api_returns(stylekit_recipe):
    result = stylekit.stylize(stylekit.load(stylekit_recipe, {"images.preserve_colors": "luminance"}, registry=tiny_registry()))
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "images.preserve_colors=luminance")
    assert status == 0, err
    assert result.image.tobytes() == open_rgb(str(stylekit_recipe.parent / "out" / "result.png")).tobytes()


def test_a_recipe_from_a_file_a_text_and_a_dict_gives_the_same_image(stylekit_recipe, monkeypatch):
    import tomllib

    registry = tiny_registry()
    text = stylekit_recipe.read_text()
    monkeypatch.chdir(stylekit_recipe.parent)  # text and dicts resolve paths against the current folder
    results = [stylekit.stylize(source, registry=registry, overrides={"run.steps": 3})
               for source in (stylekit_recipe, text, tomllib.loads(text))]
    assert all(torch.equal(results[0].tensor, r.tensor) for r in results[1:])
    assert results[1].record["recipe_file"] == "<string>" and results[2].record["recipe_file"] == "<dict>"


def test_images_as_paths_pil_images_and_tensors_give_the_same_image(tmp_path):
    registry = tiny_registry()
    recipe = TINY_RECIPE_HEAD.replace('[images]\ncontent = "content.png"\nstyle = "style.png"\n', "") + TINY_LOSSES
    content, style = pattern(48, 64, "content"), pattern(40, 40, "style")
    content.save(tmp_path / "c.png")
    as_tensor = to_tensor(style, (40, 40))[0]
    from_paths = stylekit.stylize(recipe, content=tmp_path / "c.png", style=[str(tmp_path / "c.png")], registry=registry)
    from_memory = stylekit.stylize(recipe, content=content, style=content, registry=registry)
    assert torch.equal(from_paths.tensor, from_memory.tensor)
    from_tensor = stylekit.stylize(recipe, content=content, style=as_tensor, registry=registry)
    from_pil = stylekit.stylize(recipe, content=content, style=style, registry=registry)
    assert torch.equal(from_tensor.tensor, from_pil.tensor)
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]


def test_new_images_for_a_loaded_plan_keep_its_paths_and_source(stylekit_recipe, monkeypatch):
    plan = stylekit.load(stylekit_recipe, registry=tiny_registry())
    monkeypatch.chdir(stylekit_recipe.parent.parent)  # the plan's paths are resolved already
    again = stylekit.stylize(plan, content=pattern(48, 64, "style"), overrides={"run.steps": 2}, registry=tiny_registry())
    assert again.plan.output == plan.output and again.record["recipe_file"] == str(stylekit_recipe)


def test_a_diverged_run_keeps_its_loss_history_in_the_record(stylekit_recipe):
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "optimizer.name=sgd", "--set", "optimizer.params.lr=1e38",
                             "--set", "run.clamp=false", "--steps", "10")
    assert status == 3
    record = json.loads((stylekit_recipe.parent / "out" / "result.diverged.json").read_text())
    assert len(record["losses"]) == record["diverged_at_step"] and record["losses"][-1]["total"] is None


def test_a_recipe_without_images_needs_them_given(tmp_path):
    recipe = TINY_RECIPE_HEAD.replace('[images]\ncontent = "content.png"\nstyle = "style.png"\n', "") + TINY_LOSSES
    with pytest.raises(stylekit.UserError, match="<string>:.*images: required field is missing"):
        stylekit.load(recipe, registry=tiny_registry())


def test_overrides_given_in_python_are_named_as_given_not_as_a_flag(stylekit_recipe):
    def problems(overrides):
        with pytest.raises(stylekit.UserError) as caught:
            stylekit.load(stylekit_recipe, overrides, registry=tiny_registry())
        return [str(p) for p in caught.value.problems]

    # A bad value names the dict entry, not the recipe's [run] line that never said it.
    assert problems({"run.steps": 0}) == ["overrides['run.steps']: run.steps: Input should be greater than or equal to 1 (got 0)"
                                           " - write a whole number at least 1 and at most 100000"]
    assert problems({("run", "steps"): 0})[0].startswith("overrides[('run', 'steps')]: run.steps:")
    (malformed,) = problems({"loss..weight": 1})
    assert malformed.startswith("overrides['loss..weight']: empty part between dots - write a dotted key, e.g. {")
    assert "--set" not in malformed and "KEY=VALUE" not in malformed
    with pytest.raises(stylekit.UserError, match=r"^overrides\['run.steps'\]: run.steps:"):  # stylize passes them on
        stylekit.stylize(stylekit_recipe, overrides={"run.steps": -1}, registry=tiny_registry())


def test_the_callback_sees_each_step_and_can_stop(tmp_path):
    recipe = write_recipe(tmp_path, TINY_LOSSES + "\n[[stage]]\nwidth = 32\nsteps = 3\n\n[[stage]]\nwidth = 64\nsteps = 4\n")
    seen = []

    def watch(info):
        seen.append((info.stage, info.stages, info.step, info.total, tuple(info.image.shape), tuple(info.losses)))
        if info.step == 5:
            info.stop()

    result = stylekit.stylize(stylekit.load(recipe, registry=tiny_registry()), callback=watch)
    assert [s[:4] for s in seen] == [(1, 2, 1, 7), (1, 2, 2, 7), (1, 2, 3, 7), (2, 2, 4, 7), (2, 2, 5, 7)]
    assert seen[0][4] == (1, 3, 24, 32) and seen[-1][4] == (1, 3, 48, 64)
    assert seen[0][5] == ("total", "content", "gram", "tv")
    assert result.status == "stopped" and result.steps_done == 5 and len(result.history) == 5
    assert result.record["status"] == "stopped" and result.record["steps_done"] == 5


class NaNAfter:
    """A plugin whose loss term turns NaN from its fourth evaluation on."""

    @hookimpl
    def register_losses(self, register):
        from stylekit.builtins.losses import TotalVariation

        class Flaky(TotalVariation):
            name = "flaky"
            calls = 0

            def forward(self, features, image):
                Flaky.calls += 1
                value = super().forward(features, image)
                return value * float("nan") if Flaky.calls > 3 else value

        register(Flaky)


def test_a_nan_from_a_plugin_stops_the_run_and_keeps_the_last_finite_image(stylekit_recipe):
    registry = tiny_registry([(NaNAfter(), PluginInfo("flaky", "stylekit-flaky", "1.0"))])
    stylekit_recipe.write_text(stylekit_recipe.read_text().replace('name = "tv"', 'name = "flaky"'))
    out = stylekit_recipe.parent / "out"
    status, _, err = run_cli("run", str(stylekit_recipe), "--steps", "10", registry=registry)
    assert status == 3 and "Traceback" not in err
    assert "flaky (package stylekit-flaky) went non-finite (NaN or infinity) at step 4 of 10" in err
    assert "the last finite image (step 3) is kept at" in err and str(out / "result.diverged.png") in err
    assert not (out / "result.png").exists() and not (out / "result.json").exists()
    record = json.loads((out / "result.diverged.json").read_text())  # strict JSON: parses
    assert record["status"] == "diverged" and record["diverged_at_step"] == 4 and record["non_finite"] == ["flaky"]


def test_an_overflowing_learning_rate_stops_the_run(stylekit_recipe):
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "optimizer.name=sgd", "--set", "optimizer.params.lr=1e38",
                             "--set", "run.clamp=false", "--steps", "10")
    assert status == 3 and "went non-finite" in err and "lower the learning rate" in err
    assert not (stylekit_recipe.parent / "out" / "result.png").exists()


def test_a_nan_weight_never_gives_an_image(stylekit_recipe):
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "loss[1].weight=nan")
    assert status in (2, 3) and "Traceback" not in err and "loss" in err
    assert not (stylekit_recipe.parent / "out" / "result.png").exists()


def test_a_failed_write_keeps_the_image_and_says_where(stylekit_recipe, tmp_path, monkeypatch):
    from stylekit.files import outputs

    spare = tmp_path / "spare"
    spare.mkdir()

    def disk_full(handle):  # the record fits, the image does not
        handle.write(b"half an image")
        raise OSError(errno.ENOSPC, "No space left on device")  # as a full disk says it: no file named

    monkeypatch.setattr(outputs, "image_writer", lambda image, path, mark=None: disk_full)  # the spare: images'
    monkeypatch.setattr(outputs.tempfile, "gettempdir", lambda: str(spare))
    status, _, err = run_cli("run", str(stylekit_recipe))
    assert status == 3 and "Traceback" not in err
    out = stylekit_recipe.parent / "out"
    assert f"could not write {out / 'result.png'} (No space left on device: {out / 'result.png'})" in err
    assert f"the image is kept at {spare / 'result.png'}" in err and (spare / "result.png").is_file()
    assert list(out.iterdir()) == [], "nothing half-written: not the record without its image, no temporary file"


@pytest.mark.parametrize("setting, field", [("run.precision=fp16", "run.precision"), ("run.device=cuda:0", "run.device")])
def test_validate_and_run_agree_on_device_and_precision(stylekit_recipe, setting, field):
    if torch.cuda.is_available():
        pytest.skip("these are refused only where there is no CUDA GPU")
    for command in ("validate", "run"):
        status, _, err = run_cli(command, str(stylekit_recipe), "--set", setting)
        assert status == 2 and f"{field}: " in err, (command, err)
    assert not (stylekit_recipe.parent / "out").exists()


def test_validate_and_run_agree_on_a_truncated_image(stylekit_recipe):
    path = stylekit_recipe.parent / "style.png"
    pattern(200, 200, "style").save(stylekit_recipe.parent / "big.jpg")
    data = (stylekit_recipe.parent / "big.jpg").read_bytes()
    path.with_suffix(".jpg").write_bytes(data[: len(data) // 2])
    for command in ("validate", "run"):  # (a path given with --set is relative to the current folder)
        status, _, err = run_cli(command, str(stylekit_recipe), "--set", f"images.style='{path.with_suffix('.jpg')}'")
        assert status == 2 and "images.style[0]: not a readable image" in err, (command, err)


def test_validate_and_run_agree_on_an_output_folder_that_cannot_be_written(stylekit_recipe, monkeypatch):
    """Root writes anywhere, so the read-only folder is simulated where the check asks."""
    from stylekit.recipe import output_checks as checks

    real = checks.tempfile.TemporaryFile
    locked = stylekit_recipe.parent / "locked"
    locked.mkdir()

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == locked:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(checks.tempfile, "TemporaryFile", read_only)
    for command in ("validate", "run"):
        status, _, err = run_cli(command, str(stylekit_recipe), "-o", str(locked / "x.png"))
        assert status == 2 and f"cannot write in {locked} (Permission denied)" in err, (command, err)
    assert list(locked.iterdir()) == []


def test_checkpointing_needs_a_backbone_that_supports_it_checked_at_load(stylekit_recipe, monkeypatch):
    from stylekit.testing import TinyBackbone

    monkeypatch.setattr(TinyBackbone, "supports_checkpointing", False)
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "run.checkpoint=true")
    assert status == 2 and "run.checkpoint: backbone 'tiny' does not support checkpointing" in err


def test_save_refuses_what_stylekit_run_refuses_and_writes_nothing(stylekit_recipe):
    # Result.save(path) may name any path: it must keep the user's files as `stylekit run -o` does.
    folder = stylekit_recipe.parent
    result = stylekit.stylize(stylekit.load(stylekit_recipe, {"run.steps": 1}, registry=tiny_registry()))
    (folder / "notes.json").write_text('{"mine": 1}')
    (folder / "photos").mkdir()
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for path, words in [(folder / "content.png", "would overwrite the input content image"),
                        (folder / "style.png", "would overwrite the input style image"),
                        (folder / "notes.png", "not a stylekit run record - choose another output name or pass record=False"),
                        (folder / "photos", "is a folder"),
                        (folder / "result.bmp", "must end in .png, .jpg or .jpeg")]:
        with pytest.raises(stylekit.UserError, match=words):
            result.save(path)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert result.save(folder / "notes.png", record=False) == folder / "notes.png"  # no record: nothing to replace


@pytest.mark.parametrize("image, words", [
    (torch.rand(3, 8, 8) * 255, r"values in \[0, 1\], not .* to 2\d\d(\.\d+)? - divide 0..255 pixels by 255"),
    (torch.rand(3, 8, 8) * 4.4 - 2.1, r"values in \[0, 1\], not -2.* to 2.*"),  # ImageNet-normalized
    (torch.full((3, 8, 8), float("nan")), "NaN or infinite"),
    (torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8), "floats in .* not torch.uint8"),
    (torch.rand(3, 0, 8), "empty"),
    (Image.new("RGB", (0, 0)), "empty"),
    (123, "a file path, a PIL image or a .* tensor .*, not int"),
    (__import__("numpy").zeros((8, 8, 3)), "not numpy.ndarray - convert it with PIL.Image.fromarray"),
])
def test_an_image_argument_that_would_give_another_image_is_refused(stylekit_recipe, image, words):
    # Clamping a 0..255 or NaN tensor to [0, 1] would run on a white or black image in silence.
    with pytest.raises(stylekit.UserError, match=f"^content: .*{words}"):
        stylekit.load(stylekit_recipe, content=image, registry=tiny_registry())


def test_a_tensor_that_overshoots_0_1_a_little_is_clamped(stylekit_recipe):
    # Bicubic resampling rings a few percent past the range; that is still a [0, 1] image.
    image = torch.rand(3, 8, 8) * 1.08 - 0.04
    plan = stylekit.load(stylekit_recipe, content=image, registry=tiny_registry())
    assert plan.images.content.tobytes() == stylekit.load(
        stylekit_recipe, content=image.clamp(0, 1), registry=tiny_registry()).images.content.tobytes()


def test_a_pil_image_is_read_as_the_same_file_would_be(stylekit_recipe):
    # 16-bit: scaled, not clipped to white by PIL's convert("RGB"); transparency on images.background.
    grey16 = Image.fromarray(__import__("numpy").full((48, 64), 32768, dtype="uint16"))
    clear = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    for image, background, expected in [(grey16, "white", (128, 128, 128)), (clear, "#ff0000", (255, 0, 0))]:
        image.save(stylekit_recipe.parent / "given.png")
        plans = [stylekit.load(stylekit_recipe, {"images.background": background}, content=given, registry=tiny_registry())
                 for given in (image, stylekit_recipe.parent / "given.png")]
        assert [p.images.content.getpixel((5, 5)) for p in plans] == [expected, expected]


def test_a_recipe_overrides_or_callback_of_the_wrong_type_is_named(stylekit_recipe):
    with pytest.raises(stylekit.UserError, match="a recipe must be a file path, a TOML text or a dict, not int"):
        stylekit.load(123, registry=tiny_registry())
    with pytest.raises(stylekit.UserError, match="callback must be a function .* not int"):
        stylekit.stylize(stylekit.load(stylekit_recipe, registry=tiny_registry()), callback=5)
    with pytest.raises(stylekit.UserError, match=r"^overrides: must be a dict of dotted keys to values.* not list"):
        stylekit.load(stylekit_recipe, [("run.steps", 3)], registry=tiny_registry())


def test_a_content_path_given_to_the_api_is_kept_from_being_overwritten(stylekit_recipe, monkeypatch):
    # A path argument is read as the recipe's own paths are, so Result.save knows it is an input.
    monkeypatch.chdir(stylekit_recipe.parent)
    result = stylekit.stylize(stylekit_recipe, content="style.png", overrides={"run.steps": 1}, registry=tiny_registry())
    with pytest.raises(stylekit.UserError, match="would overwrite the input content image"):
        result.save("style.png")
    # Also through a plan stylized with another style: its content is still the file.
    plan = stylekit.load(stylekit_recipe, {"run.steps": 1}, content="style.png", registry=tiny_registry())
    result = stylekit.stylize(plan, style="content.png")
    with pytest.raises(stylekit.UserError, match="would overwrite the input content image"):
        result.save("style.png")
    with pytest.raises(stylekit.UserError, match=r"^content='nope.png': images.content: image file not found"):
        stylekit.load(stylekit_recipe, content="nope.png", registry=tiny_registry())


@pytest.mark.parametrize("foreign, extra, why", [
    ("result.diverged.json", [], " (not beside the output: the run record would replace {out}/result.diverged.json, "
                                 "which is not a stylekit run record"),
    ("result.diverged.png", [], " (not beside the output: the last finite image would overwrite the input content image "
                                "{out}/result.diverged.png"),
    ("result.diverged.json", ["--set", "output.record=false"], ""),  # no record, so the image goes beside the output
])
def test_a_diverged_run_replaces_nothing_stylekit_did_not_write(stylekit_recipe, monkeypatch, foreign, extra, why):
    # The image kept from a diverged run follows the output's rule; the user's file stays.
    folder = stylekit_recipe.parent
    out, elsewhere = folder / "out", folder / "tmp"
    out.mkdir()
    elsewhere.mkdir()
    (out / foreign).write_bytes((folder / "content.png").read_bytes())  # the .png is given as the content below
    monkeypatch.setattr("tempfile.tempdir", str(elsewhere))
    content = out / foreign if foreign.endswith(".png") else folder / "content.png"
    status, _, err = run_cli("run", str(stylekit_recipe), "--content", str(content), "--set", "optimizer.name=sgd",
                             "--set", "optimizer.params.lr=1e38", "--set", "run.clamp=false", "--steps", "10", *extra)
    assert status == 3 and "Traceback" not in err
    assert (out / foreign).read_bytes() == (folder / "content.png").read_bytes()
    kept = out if not why else elsewhere
    assert sorted(p.name for p in out.iterdir()) == sorted({foreign, *(["result.diverged.png"] if kept == out else [])})
    assert f"is kept at {kept / 'result.diverged.png'}{why.format(out=out)}" in err


def test_result_save_refuses_a_name_too_long_for_its_record(stylekit_recipe, monkeypatch):
    monkeypatch.chdir(stylekit_recipe.parent)
    result = stylekit.stylize(stylekit_recipe, overrides={"run.steps": 1}, registry=tiny_registry())
    with pytest.raises(stylekit.UserError, match=r"^Result.save path: the output's name x{40}\.\.\.x{11}\.png is 233 bytes "
                                                 r"long; .* at most 232 bytes for this name - choose a shorter name$"):
        result.save("x" * 229 + ".png")  # its record's temporary file, .x...x.json.PID.stylekit-tmp, would not fit
    result.save("x" * 229 + ".png", record=False)  # its own does



@pytest.mark.parametrize("call, said", [
    (lambda r, reg: stylekit.load(r, content=torch.empty(3, 8, 8, device="meta"), registry=reg),
     "^content: a meta tensor holds no pixels to read"),
    (lambda r, reg: stylekit.load(r, style=torch.rand(3, 8, 8).to_sparse(), registry=reg),
     "^style: a torch.sparse_coo tensor holds no pixels to read - give a dense tensor"),
    (lambda r, reg: stylekit.load(r, {None: 1}, registry=reg), "^overrides: keys are dotted field names .* not None$"),
    (lambda r, reg: stylekit.load(r, {42: 1}, registry=reg), "^overrides: keys are dotted field names .* not 42$"),
    (lambda r, reg: stylekit.load(r, {(): 1}, registry=reg), r"^overrides: keys are dotted field names .* not \(\)$"),
    (lambda r, reg: stylekit.load(r, base=42, registry=reg), r"^base: must be a path \(a str or a pathlib.Path\), not int$"),
    (lambda r, reg: stylekit.load(r, label=42, registry=reg), "^label: must be a str"),
    (lambda r, reg: stylekit.load(r, registry=42), "^registry: must be a stylekit Registry .* not int$"),
    (lambda r, reg: stylekit.stylize(r, registry=42), "^registry: must be a stylekit Registry .* not int$"),
    (lambda r, reg: stylekit.load(r, content="a\0b.png", registry=reg), r"^content: a path cannot contain a NUL character"),
    (lambda r, reg: stylekit.load(r, style=["s.png", "a\0b.png"], registry=reg), r"^style\[1\]: a path cannot contain a NUL"),
    (lambda r, reg: stylekit.load(str(r) + "\0", registry=reg), "^a recipe path cannot contain a NUL character"),
    (lambda r, reg: stylekit.stylize(r, checkpoint=42, registry=reg), "^checkpoint: must be a path .* not int$"),
    (lambda r, reg: stylekit.stylize(r, checkpoint="a\0b.pt", registry=reg), "^checkpoint: a path cannot contain a NUL"),
    (lambda r, reg: stylekit.stylize(r, checkpoint=r.parent, registry=reg), "^checkpoint: .* is a folder - give a file name"),
    (lambda r, reg: stylekit.stylize(r, checkpoint=r, registry=reg),  # the recipe itself, say
     "^checkpoint: .*recipe.toml is a file that stylekit did not write, which the run's checkpoint would replace"),
], ids=["meta tensor", "sparse tensor", "key None", "key 42", "key ()", "base 42", "label 42", "registry 42",
        "stylize registry 42", "content NUL", "style NUL", "recipe NUL", "checkpoint 42", "checkpoint NUL",
        "checkpoint a folder", "checkpoint a file of the user's"])
def test_each_argument_of_the_wrong_kind_is_a_user_error_naming_it(stylekit_recipe, call, said):
    with pytest.raises(stylekit.UserError, match=said):
        call(stylekit_recipe, tiny_registry())


@pytest.mark.parametrize("path, record, said", [
    (42, None, r"^Result.save path: must be a path \(a str or a pathlib.Path\), not int$"),
    (b"x.png", None, "^Result.save path: must be a path .* not bytes$"),
    ("a\0b.png", None, r"^Result.save path: a path cannot contain a NUL character \(\\0\)"),
    ("x.png", "yes", "^Result.save record: must be True, False or None, not str$"),
])
def test_result_save_names_an_argument_of_the_wrong_kind(stylekit_recipe, path, record, said):
    result = stylekit.stylize(stylekit_recipe, overrides={"run.steps": 1}, registry=tiny_registry())
    with pytest.raises(stylekit.UserError, match=said):
        result.save(path, record=record)
    assert not (stylekit_recipe.parent / "out").exists()
