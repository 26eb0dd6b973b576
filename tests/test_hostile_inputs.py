"""Hostile inputs (issue 19) that the corpus (tests/corpus/) cannot hold: devices read in a
child process under a time and memory limit, so that a regression fails the test instead
of hanging the suite or filling the memory; deep nesting and booleans given from Python or
in arguments too long for the corpus' table; the limits and bounds themselves."""

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import stylekit
from stylekit.errors import UserError
from stylekit.testing import TINY_RECIPE_HEAD, run_cli, tiny_registry, write_recipe

ROOT = Path(__file__).resolve().parent.parent

# The loaders' use of stylekit.files.reading is checked by the corpus (a FIFO and /dev/null
# as recipe, image, record, manifest, batch input); here the reading itself, on devices that
# never end and a FIFO nobody writes to, in a child (no torch: a fraction of a second).
CHILD = textwrap.dedent("""
    import json, os, sys
    from stylekit.files.reading import NotRegularFile, read_bytes

    found = {}
    for path in sys.argv[1:]:
        try:
            read_bytes(path, 1 << 20)
            found[path] = "read"
        except NotRegularFile as exc:
            found[path] = exc.strerror
    print(json.dumps(found))
""")


def _limited() -> None:
    # 1 GB of address space: reading /dev/zero whole (as the recipe loader used to) ends in
    # a MemoryError within a second rather than taking the machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.skipif(not Path("/dev/urandom").exists() or not hasattr(os, "mkfifo"), reason="needs devices and FIFOs")
def test_devices_and_fifos_are_refused_without_reading_them(tmp_path):
    os.mkfifo(tmp_path / "pipe.toml")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # A correct child takes a tenth of a second; one that waits on the FIFO would never end.
    done = subprocess.run([sys.executable, "-c", CHILD, "/dev/zero", "/dev/urandom", str(tmp_path / "pipe.toml")],
                          capture_output=True, text=True, timeout=60, preexec_fn=_limited, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"/dev/zero": "not a regular file (a character device)",
                                       "/dev/urandom": "not a regular file (a character device)",
                                       str(tmp_path / "pipe.toml"): "not a regular file (a FIFO)"}


# ---------------------------------------------------------------- nesting


DEEP = 5000  # past tomllib's and json's recursion (about 300 levels)


@pytest.mark.parametrize("argument", [
    "run.x=" + "[" * DEEP + "1" + "]" * DEEP,
    "run.x=" + "{a=" * DEEP + "1" + "}" * DEEP,
    "run." + ".".join(["a"] * DEEP) + "=1",
    "run.x=" + "[" * 70 + "1" + "]" * 70,  # parses, but past the 64 levels a recipe may nest
], ids=["arrays", "inline-tables", "dotted-key", "70-deep"])
def test_deep_set_values_are_refused(stylekit_recipe, argument):
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", argument)
    assert status == 2
    assert err.startswith("error: --set ") and err.rstrip().endswith(
        "tables, arrays or dotted keys nested more than 64 levels deep - a recipe needs a few; flatten it")
    assert len(err.splitlines()) == 1


def _nested(depth: int, leaf=1, kind=dict):
    value = leaf
    for _ in range(depth):
        value = {"a": value} if kind is dict else [value]
    return value


@pytest.mark.parametrize("kind", [dict, list])
def test_deep_python_overrides_and_dicts_are_refused(stylekit_recipe, kind):
    registry = tiny_registry()
    with pytest.raises(UserError, match=r"overrides\['run.x'\]: run.x.* nested more than 64 levels deep"):
        stylekit.load(str(stylekit_recipe), overrides={"run.x": _nested(DEEP, kind=kind)}, registry=registry)
    data = {"run": {"x": _nested(DEEP, kind=kind)}}
    with pytest.raises(UserError, match=r"<dict>: run.x.* nested more than 64 levels deep"):
        stylekit.load(data, registry=registry)


def test_nesting_within_the_limit_is_read_as_before(stylekit_recipe):
    # 60 levels under backbone.params: the params model refuses the key, not the depth.
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "backbone.params.x=" + "[" * 60 + "1" + "]" * 60)
    assert status == 2
    assert "unknown key 'x'" in err and "nested" not in err


# ---------------------------------------------------------------- booleans for numbers


def test_booleans_for_numbers_are_refused_from_python_too(stylekit_recipe):
    registry = tiny_registry()
    with pytest.raises(UserError, match="run.steps: expected an integer, not the boolean true"):
        stylekit.load(str(stylekit_recipe), overrides={"run.steps": True}, registry=registry)
    with pytest.raises(UserError, match="output.record: expected true or false, not the number 1"):
        stylekit.load(str(stylekit_recipe), overrides={"output.record": 1}, registry=registry)
    import tomllib

    data = tomllib.loads(stylekit_recipe.read_text())
    data["run"]["steps"] = False
    with pytest.raises(UserError, match="run.steps: expected an integer, not the boolean false"):
        stylekit.load(data, base=stylekit_recipe.parent, registry=registry)


def test_booleans_for_component_params_are_refused(stylekit_recipe):
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "optimizer.name=lbfgs",
                             "--set", "optimizer.params.history=true")
    assert status == 2
    assert err == ("error: --set optimizer.params.history=true: optimizer.params.history: expected an integer, not the "
                   "boolean true - a boolean is not a count; write a whole number (optimizer 'lbfgs' of package "
                   "'stylekit')\n")


# ---------------------------------------------------------------- bounds in the schema


@pytest.mark.parametrize("device, ok", [("cpu", True), ("cpu:0", True), ("mps:0", True), ("cuda:0", True),
                                        ("cuda:127", True), ("cuda:128", False), ("cuda:01", False),
                                        ("auto:0", False), ("cpu:1", False), ("cuda:", False)])
def test_device_strings(device, ok):
    from pydantic import ValidationError

    from stylekit.recipe.schema import RunSpec

    if ok:
        RunSpec(device=device)
    else:
        with pytest.raises(ValidationError, match="is no device"):
            RunSpec(device=device)


def test_a_gpu_the_machine_lacks_is_named(monkeypatch):
    import torch

    from stylekit.recipe.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match=r"'cuda:2' was asked for but this machine has 2 CUDA GPUs \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda:1")


@pytest.mark.parametrize("seed, ok", [(0, True), (-1, True), (2**64 - 1, True), (-(2**63), True), (2**64, False),
                                      (-(2**63) - 1, False)])
def test_seeds_are_what_torch_takes(seed, ok):
    import torch
    from pydantic import ValidationError

    from stylekit.recipe.schema import RunSpec

    if ok:
        torch.Generator().manual_seed(RunSpec(seed=seed).seed)
    else:
        with pytest.raises(ValidationError):
            RunSpec(seed=seed)


@pytest.mark.parametrize("sets, message", [
    (["optimizer.name=adam", "optimizer.params.lr=1e38"], "Adam's first step, is 1e+39, more than float32 numbers hold"),
    (["optimizer.name=adam", "optimizer.params.betas=[1, 0.9]"], "optimizer.params.betas[0]: Input should be less than 1"),
    (["optimizer.name=sgd", "optimizer.params.lr=1e39"], "optimizer.params.lr: Input should be less than or equal to "
                                                           "3.40282e+38 (got 1e+39)"),
    (["optimizer.name=sgd", "optimizer.params.momentum=1"], "optimizer.params.momentum: Input should be less than 1"),
    (["scheduler.name=step", "scheduler.params.gamma=2"], "scheduler.params.gamma: Input should be less than or equal to 1"),
    (["scheduler.name=cosine", "scheduler.params.min_lr=1e300"], "scheduler.params.min_lr: Input should be less than or "
                                                                   "equal to 3.40282e+38"),
], ids=["adam-lr", "adam-beta", "sgd-lr", "sgd-momentum", "step-gamma", "cosine-min-lr"])
def test_optimizer_and_scheduler_params_stay_in_range(stylekit_recipe, sets, message):
    status, _, err = run_cli("validate", str(stylekit_recipe), *(arg for text in sets for arg in ("--set", text)))
    assert status == 2
    assert message in err


def test_batch_size_bounds(tmp_path, monkeypatch):
    write_recipe(tmp_path)
    monkeypatch.chdir(tmp_path)
    for size in ("0", "1025", "99999999999999999999"):
        status, _, err = run_cli("batch", "recipe.toml", "--content", "content.png", "-o", "b", "--batch-size", size)
        assert status == 2
        assert err == f"error: --batch-size {size}: give a whole number of images per step, from 1 to 1024, or auto\n"
    status, _, err = run_cli("batch", "recipe.toml", "--content", "content.png", "-o", "b", "--batch-size", "1024",
                             "--dry-run")
    assert status == 0, err


# ---------------------------------------------------------------- files


def test_text_files_are_read_up_to_their_limit(tmp_path, monkeypatch):
    from stylekit.commands import batch_items

    (tmp_path / "pairs.csv").write_text("content,style\n" + "a.png,b.png\n" * 100)
    monkeypatch.setattr(batch_items, "MANIFEST_LIMIT", 1000)
    problems = []
    assert batch_items.read_manifest(tmp_path / "pairs.csv", problems) == []
    assert [str(p) for p in problems] == [f"{tmp_path / 'pairs.csv'}: larger than 1,000 bytes, the most stylekit reads "
                                          f"of a manifest - split it into several batches"]


def test_text_metadata_past_the_limit_is_named(tmp_path, monkeypatch):
    from PIL import Image, ImageFile, PngImagePlugin

    from stylekit.files import images

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (2 << 20), zip=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png", pnginfo=info)
    assert images.open_rgb(str(tmp_path / "a.png")).size == (8, 8)  # 2 MB: past Pillow's 1 MB default
    monkeypatch.setattr(images, "TEXT_LIMIT", 1 << 20)
    with pytest.raises(UserError, match="holds more than 1 MB of text metadata"):
        images.open_rgb(str(tmp_path / "a.png"))
    assert PngImagePlugin.MAX_TEXT_CHUNK == ImageFile.SAFEBLOCK  # Pillow's own limit is left as it was


def test_memory_running_out_while_decoding_is_a_message(stylekit_images, monkeypatch):
    from stylekit.files import images

    def no_memory(img, spec=None):
        raise MemoryError

    monkeypatch.setattr(images, "rgb_of", no_memory)
    content, _ = stylekit_images
    with pytest.raises(UserError, match="not enough memory to decode .*content.png - make it smaller, or free memory"):
        images.open_rgb(str(content))


# ---------------------------------------------------------------- what is printed


def test_paths_in_progress_lines_are_escaped(tmp_path, monkeypatch):
    write_recipe(tmp_path, head=TINY_RECIPE_HEAD.replace("steps = 5", "steps = 2"))
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli("run", "recipe.toml", "-o", "out/a\nb.png")
    assert status == 0, err
    assert (tmp_path / "out" / "a\nb.png").exists()  # written under the name given
    header, wrote = err.splitlines()
    assert header.startswith("stylekit 0.1.0: recipe.toml -> ") and "out/a\\nb.png (64x48, 2 steps" in header
    assert wrote.startswith("wrote ") and "out/a\\nb.png in " in wrote


def test_misspelt_plugin_names_are_told(stylekit_recipe, monkeypatch):
    from stylekit.plugins.registry import load_registry

    registry = load_registry(env={"STYLEKIT_PLUGINS": "stylekit, stylekit-nope"})
    assert registry.unmatched == ["stylekit-nope"]  # the built-in package matches
    status, out, err = run_cli("plugins", "--json", registry=registry)
    assert status == 0
    json.loads(out)  # the warning goes to stderr
    assert err.startswith("warning: STYLEKIT_PLUGINS names 'stylekit-nope', but no installed distribution provides "
                          "stylekit plugins under that name")
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "loss[0].name=nope", registry=registry)
    assert status == 2
    assert "; a plugin may be left out: STYLEKIT_PLUGINS names 'stylekit-nope'" in err
