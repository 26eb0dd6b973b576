"""Load-time checks (stylekit/recipe/input_checks.py, output_checks.py), the --set parser (stylekit/recipe/overrides.py) and the
resource messages (stylekit/run/failures.py and stylekit/run/estimate.py), beyond what the corpus shows case by case."""

import json
import sys

import pytest
import torch

from stylekit.run import estimate, failures
from stylekit.builtins.vgg19 import VGG19
from stylekit.recipe.output_checks import is_run_record
from stylekit.errors import Problem, UserError
from stylekit.recipe.overrides import apply_override, parse_key, parse_override, with_cwd_paths
from stylekit.testing import run_cli


# ---------------------------------------------------------------- minimum sizes


@pytest.mark.parametrize("layer, side", [("conv1_1", 1), ("relu1_2", 1), ("pool1", 2), ("relu2_1", 2),
                                         ("relu4_2", 8), ("relu5_1", 16), ("pool5", 32)])
def test_vgg19_minimum_is_two_to_the_pools_up_to_the_deepest_layer(layer, side):
    assert VGG19.min_input_side_for(VGG19.Params(), frozenset({"relu1_1", layer})) == side


def test_vgg19_minimum_is_exactly_what_the_network_needs():
    # Against the real network (random weights): the declared side works, one less fails.
    net = VGG19(VGG19.Params(), "random")
    for layer in ("relu4_2", "pool5"):
        side = VGG19.min_input_side_for(net.params, frozenset({layer}))
        with torch.no_grad():
            assert net.features(torch.rand(1, 3, side, side), frozenset({layer}))[layer].shape[-1] >= 1
            with pytest.raises(RuntimeError, match="Output size is too small"):
                net.features(torch.rand(1, 3, side - 1, side + 40), frozenset({layer}))


# ---------------------------------------------------------------- run records


def test_a_record_stylekit_wrote_is_recognised_as_one(stylekit_recipe):
    # Ties is_run_record to what the runner writes: if the record's shape changes, this fails.
    assert run_cli("run", str(stylekit_recipe))[0] == 0
    record = stylekit_recipe.parent / "out" / "result.json"
    assert is_run_record(record)
    assert run_cli("run", str(stylekit_recipe))[0] == 0  # and a second run may replace it


def test_a_record_of_another_image_is_not_replaced(stylekit_recipe):
    # -o result.png, then -o result.jpg: both records are result.json; the first is kept.
    out = stylekit_recipe.parent / "out"
    assert run_cli("run", str(stylekit_recipe))[0] == 0
    record = (out / "result.json").read_bytes()
    status, _, err = run_cli("run", str(stylekit_recipe), "-o", str(out / "result.jpg"))
    assert status == 2 and not (out / "result.jpg").exists() and (out / "result.json").read_bytes() == record
    assert err.strip().endswith(f"the run record would replace {out / 'result.json'}, the record of {out / 'result.png'} "
                                f"- choose another output name or set output.record = false")
    (out / "result.png").unlink()  # with its image gone, the record describes nothing kept
    assert run_cli("run", str(stylekit_recipe), "-o", str(out / "result.jpg"))[0] == 0
    assert json.loads((out / "result.json").read_text())["image"] == "result.jpg"


@pytest.mark.parametrize("text", ['{"name": "my-app"}', "[1, 2]", '{"recipe_file": "x", "versions": 3}', "not json", ""])
def test_other_json_files_are_not_records(tmp_path, text):
    path = tmp_path / "x.json"
    path.write_text(text)
    assert not is_run_record(path)


# ---------------------------------------------------------------- --set


@pytest.mark.parametrize("key, path", [
    ("run.steps", ("run", "steps")),
    ("loss[0].params.lr", ("loss", 0, "params", "lr")),
    ("stage[1].width", ("stage", 1, "width")),
    (" images.style[2] ", ("images", "style", 2)),
    ("loss[0][1]", ("loss", 0, 1)),
])
def test_keys_parse(key, path):
    assert parse_key(key, key) == path


@pytest.mark.parametrize("key", ["", "a..b", ".a", "a.", "[0]", "loss[-1]", "loss[x]", "loss[", "a b", "loss]0["])
def test_malformed_keys_are_user_errors(key):
    with pytest.raises(UserError, match=r"^--set .*: .* - write KEY=VALUE"):
        parse_key(key, f"{key}=1")


def test_values_are_toml_and_bare_words_are_strings():
    assert parse_override("a=0.5") == (("a",), 0.5)
    assert parse_override("a=[1, 2]") == (("a",), [1, 2])
    assert parse_override("a=luminance") == (("a",), "luminance")
    assert parse_override("a = x=y") == (("a",), "x=y")


@pytest.mark.parametrize("path, message", [
    (("run", "steps", "x"), "run.steps is a value (5), not a table - it has no field 'x'"),
    (("loss", "weight"), "no entry of loss is named 'weight' - name one (tv) or give its index, "
                         "e.g. loss.tv.weight or loss[0].weight"),
    (("images", "style", "x"), "images.style is a list - index it, e.g. images.style[0].x"),
    (("loss", 3, "weight"), "there is no loss[3] in the recipe (loss has 1 entries)"),
    (("run", 0), "run is not a list - remove the [0]"),
])
def test_overrides_through_values_are_user_errors(path, message):
    data = {"run": {"steps": 5}, "loss": [{"name": "tv"}], "images": {"style": ["a.png"]}}
    with pytest.raises(UserError) as caught:
        apply_override(data, path, 1, "--set X")
    assert caught.value.problems == [Problem(message, file="--set X")]


def test_path_fields_given_on_the_command_line_are_relative_to_the_current_folder(tmp_path):
    assert with_cwd_paths(("images", "init"), "f.png", tmp_path) == str(tmp_path / "f.png")
    assert with_cwd_paths(("images", "init"), "noise", tmp_path) == "noise"
    assert with_cwd_paths(("images", "style"), ["a.png", "b.png"], tmp_path) == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert with_cwd_paths(("images", "style", 1), "b.png", tmp_path) == str(tmp_path / "b.png")
    assert with_cwd_paths(("backbone", "weights"), "caffe", tmp_path) == "caffe"
    assert with_cwd_paths(("backbone", "weights"), "mine.pth", tmp_path) == str(tmp_path / "mine.pth")
    assert with_cwd_paths(("run", "steps"), 3, tmp_path) == 3


def test_recipe_values_still_cite_the_recipe_line(stylekit_recipe):
    stylekit_recipe.write_text(stylekit_recipe.read_text().replace("steps = 5", "steps = 0"))
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "run.seed=1")
    assert status == 2
    assert err == (f"error: {stylekit_recipe}:14: run.steps: Input should be greater than or equal to 1 (got 0)"
                   " - write a whole number at least 1 and at most 100000\n")


# ---------------------------------------------------------------- failures and estimates


@pytest.mark.parametrize("exc, kind", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                  "to allocate 1 bytes. Error code 12 (Cannot allocate memory)"), "memory"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "memory"),
    (RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"), "memory"),
    (MemoryError(), "memory"),
    (RuntimeError("Given input size: (4x1x2). Calculated output size: (4x0x1). Output size is too small"), "size"),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), None),
    (ValueError("out of memory"), None),
])
def test_failures_are_told_apart_from_bugs(exc, kind):
    message = failures.failure_message(exc, torch.device("cpu"), (48, 64))
    if kind is None:
        assert message is None
    else:
        assert message.startswith({"memory": "ran out of memory on cpu at 64x48 - lower output.width",
                                   "size": "the image is too small for the backbone at 64x48"}[kind])


def test_time_warning_for_a_run_far_beyond_the_cpu(stylekit_recipe, monkeypatch):
    monkeypatch.setattr(estimate, "CPU_FLOPS_PER_THREAD", 1.0)  # a very slow machine
    status, _, err = run_cli("run", str(stylekit_recipe), "--steps", "1")
    assert status == 0
    assert "warning: this run needs about" in err and "hours or more on this CPU" in err


def test_no_warning_for_an_ordinary_run(stylekit_recipe):
    status, _, err = run_cli("run", str(stylekit_recipe))
    assert status == 0 and "warning:" not in err


def test_a_whole_table_given_with_set_has_its_paths_relative_to_the_current_folder(tmp_path):
    value = {"content": "a.png", "style": ["b.png"], "init": "noise", "style_scale": 2.0}
    assert with_cwd_paths(("images",), value, tmp_path) == {
        "content": str(tmp_path / "a.png"), "style": [str(tmp_path / "b.png")], "init": "noise", "style_scale": 2.0}
    assert with_cwd_paths((), {"output": {"path": "o.png"}}, tmp_path) == {"output": {"path": str(tmp_path / "o.png")}}


def test_a_path_that_cannot_be_written_is_a_message_naming_it_not_a_traceback(tmp_path):
    # Every command's writes share one root (cli.main), and name the user's path, not the temporary file.
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "a-file").write_text("keep me")
    # schema -o checks its path first (it replaces only a file stylekit wrote); new-plugin's
    # write fails and is said from the OSError.
    for args, said, advice in [
            (["schema", "-o", str(tmp_path / "folder.json")], f"{tmp_path / 'folder.json'} is a folder",
             "move it away, or give another folder"),
            (["new-plugin", "x", "--kind", "loss", "--dir", str(tmp_path / "a-file")], str(tmp_path / "a-file"),
             "check the path and its permissions, or choose another")]:
        status, _, err = run_cli(*args)
        assert status == 2 and "Traceback" not in err and err.startswith("error: ") and said in err, err
        assert err.rstrip().endswith(advice)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "folder.json"]  # no temporary file left
    assert (tmp_path / "a-file").read_text() == "keep me"


def test_a_reader_that_leaves_is_not_an_error_and_an_os_error_without_a_path_is_not_the_user_s(monkeypatch, capsys):
    import stylekit.commands.cli as cli

    class Gone:  # `stylekit plugins | head`, head having read its lines
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Gone())
    assert cli.main(["plugins"]) == 0
    monkeypatch.undo()

    def full_disk(args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cli, "cmd_plugins", full_disk)
    with pytest.raises(OSError, match="No space left"):  # its traceback is what a bug report needs
        cli.main(["plugins"])


def test_a_live_port_past_65535_is_a_message():
    from stylekit.commands.live import LiveServer

    with pytest.raises(UserError, match="cannot serve on 127.0.0.1:99999 .* choose another port"):
        LiveServer("127.0.0.1", 99999).start()
