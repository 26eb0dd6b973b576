"""What `stylekit run` writes and removes beside its output, and in which order: only files
that stylekit wrote are replaced or removed (each names the image it was written for), the
image and its record are written both or neither and before the checkpoint, a full disk
makes a failed checkpoint a warning, and a signal during the final save waits for it or is
told exactly. The refusals as the user sees them are in the corpus (tests/corpus/)."""

import errno
import json
import os
import signal

import pytest

from stylekit.files import outputs
from stylekit.files.images import TEMP_MARK
from stylekit.run import checkpoints
from stylekit.testing import run_cli

SAVES = ["--set", "output.save_every=2", "--set", "output.plot=true", "--set", "output.width=32"]


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def with_callback(monkeypatch, callback):
    """`stylekit run` with `callback(info)` called after every step."""
    from stylekit.commands import run as runner

    original = runner.run_plan

    def patched(plan, resume=False, stream=None, callbacks=(), command=None):
        return original(plan, resume, stream, [*callbacks, callback], command)

    monkeypatch.setattr(runner, "run_plan", patched)


# ---------------------------------------------------------------- only what stylekit wrote


def test_a_rerun_replaces_its_own_files_and_not_those_of_another_image(stylekit_recipe):
    out = stylekit_recipe.parent / "out"
    for _ in range(2):  # the second run replaces what the first wrote
        status, _, err = run_cli("run", str(stylekit_recipe), *SAVES)
        assert status == 0, err
    assert names(out) == ["result.json", "result.losses.png", "result.png", "result.step00002.png",
                          "result.step00004.png", "result.strip.png"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # result.jpg's intermediate images and plots would take result.png's names
    status, _, err = run_cli("run", str(stylekit_recipe), "-o", str(out / "result.jpg"), *SAVES,
                             "--set", "output.record=false")
    assert status == 2 and "Traceback" not in err
    assert (f"the intermediate images (output.save_every) would replace 2 files written for {out / 'result.png'} in "
            f"{out} (result.step00002.png, result.step00004.png)") in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (out / "result.png").unlink()  # with its image gone, they belong to nothing that is kept
    assert run_cli("run", str(stylekit_recipe), "-o", str(out / "result.jpg"), *SAVES, "--set", "output.record=false")[0] == 0


def test_many_files_in_the_way_are_one_message(stylekit_recipe):
    out = stylekit_recipe.parent / "out"
    out.mkdir()
    for step in range(2, 10, 2):
        (out / f"result.step{step:05d}.png").write_text("mine")
    (out / "result.step00003.png").write_text("mine, and not a step the run saves")
    status, _, err = run_cli("validate", str(stylekit_recipe), "--steps", "9", *SAVES)
    assert status == 2
    assert err.splitlines() == [
        f"error: {stylekit_recipe}:6: output.path: the intermediate images (output.save_every) would replace 4 files "
        f"that stylekit did not write in {out} (result.step00002.png, result.step00004.png, result.step00006.png and "
        "1 more) - move them away, choose another output name or set output.save_every = 0"]


def test_a_finished_run_removes_only_its_own_checkpoint(stylekit_recipe, monkeypatch):
    # A file put where the checkpoint goes after the run was checked is not the run's to remove.
    mine = stylekit_recipe.parent / "out" / "result.checkpoint.pt"
    mine.parent.mkdir()
    with_callback(monkeypatch, lambda info: info.step == 2 and mine.write_text("precious"))
    assert run_cli("run", str(stylekit_recipe))[0] == 0
    assert mine.read_text() == "precious"


def test_a_checkpoint_names_the_image_it_was_kept_for(stylekit_recipe, monkeypatch):
    with_callback(monkeypatch, lambda info: info.step == 2 and os.kill(os.getpid(), signal.SIGINT))
    assert run_cli("run", str(stylekit_recipe))[0] == 130
    checkpoint = stylekit_recipe.parent / "out" / "result.checkpoint.pt"
    assert outputs.written_for(checkpoint) == "result.png"
    assert outputs.written_for(stylekit_recipe) is None  # a text file
    checkpoint.write_bytes(b"PK\x03\x04 not what it seems")
    assert outputs.written_for(checkpoint) is None


def test_a_diverged_image_does_not_replace_a_file_stylekit_did_not_write(stylekit_recipe, monkeypatch):
    folder = stylekit_recipe.parent
    (folder / "out").mkdir()
    (folder / "tmp").mkdir()
    mine = folder / "out" / "result.diverged.png"
    mine.write_bytes((folder / "style.png").read_bytes())
    monkeypatch.setattr("tempfile.tempdir", str(folder / "tmp"))
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "optimizer.name=sgd", "--set",
                             "optimizer.params.lr=1e38", "--set", "run.clamp=false", "--steps", "10")
    assert status == 3 and mine.read_bytes() == (folder / "style.png").read_bytes()
    assert (f"is kept at {folder / 'tmp' / 'result.diverged.png'} (not beside the output: {mine} is a file that "
            "stylekit did not write for result.png)") in err


# ---------------------------------------------------------------- a full disk


def on_checkpoint_writes(monkeypatch, before):
    """Each checkpoint write calls `before(n)` first (n = 0, 1, ...: how many came before)."""
    real, calls = checkpoints.write_bytes_atomic, []

    def write(data, path):
        before(len(calls))
        calls.append(path)
        real(data, path)

    monkeypatch.setattr(checkpoints, "write_bytes_atomic", write)


def disk_full_from(first: int):
    """A `before` for `on_checkpoint_writes`: from write `first` on, the disk is full (an
    OSError that names no file, as a full disk gives)."""
    def before(n):
        if n >= first:
            raise OSError(errno.ENOSPC, "No space left on device")
    return before


def full_disk_for_checkpoints(monkeypatch):
    on_checkpoint_writes(monkeypatch, disk_full_from(0))


def test_a_checkpoint_that_does_not_fit_is_a_warning_once(stylekit_recipe, monkeypatch):
    full_disk_for_checkpoints(monkeypatch)
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "output.checkpoint_every=1")
    assert status == 0 and "Traceback" not in err
    checkpoint = stylekit_recipe.parent / "out" / "result.checkpoint.pt"
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, "said once, not at every step"
    assert warnings[0].startswith(f"warning: could not write the checkpoint {checkpoint} (No space left on device, ")
    assert " free there) - the run goes on without it" in warnings[0]
    assert (stylekit_recipe.parent / "out" / "result.png").is_file()


def test_ctrl_c_on_a_full_disk_writes_the_image_and_says_there_is_no_checkpoint(stylekit_recipe, monkeypatch):
    full_disk_for_checkpoints(monkeypatch)
    with_callback(monkeypatch, lambda info: info.step == 2 and os.kill(os.getpid(), signal.SIGINT))
    status, _, err = run_cli("run", str(stylekit_recipe))
    assert status == 130 and "Traceback" not in err
    out = stylekit_recipe.parent / "out"
    assert names(out) == ["result.json", "result.png"]
    assert json.loads((out / "result.json").read_text())["status"] == "interrupted"
    assert err.splitlines()[-1] == (
        f"interrupted (SIGINT) at step 2 of 5: wrote {out / 'result.png'}; no checkpoint is kept (it could not be "
        "written: No space left on device), so the run cannot be continued - run it again to start over")


def test_an_older_checkpoint_is_named_when_the_newer_does_not_fit(stylekit_recipe, monkeypatch):
    on_checkpoint_writes(monkeypatch, disk_full_from(1))  # the disk fills between step 2 and step 3
    with_callback(monkeypatch, lambda info: info.step == 3 and os.kill(os.getpid(), signal.SIGTERM))
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "output.checkpoint_every=2")
    assert status == 143
    out = stylekit_recipe.parent / "out"
    assert (f"{out / 'result.checkpoint.pt'} holds step 2 (the checkpoint of step 3 is not kept: it could not be "
            "written: No space left on device) - continue from step 2 with `stylekit run") in err


def test_an_image_that_does_not_fit_is_an_error_and_the_checkpoint_still_comes(stylekit_recipe, monkeypatch, tmp_path):
    def disk_full(handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "image_writer", lambda image, path, mark=None: disk_full)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with_callback(monkeypatch, lambda info: info.step == 2 and os.kill(os.getpid(), signal.SIGINT))
    status, _, err = run_cli("run", str(stylekit_recipe))
    out = stylekit_recipe.parent / "out"
    assert status == 3 and "Traceback" not in err
    assert names(out) == ["result.checkpoint.pt"], "no record without its image, no temporary file"
    assert f"could not write {out / 'result.png'} (No space left on device: {out / 'result.png'})" in err
    assert f"the image is kept at {tmp_path / 'result.png'}" in err
    assert err.rstrip().endswith(f"and {out / 'result.checkpoint.pt'} - continue with "
                                 f"`stylekit run {stylekit_recipe} --resume`")


# ---------------------------------------------------------------- signals during the final save


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_final_save_waits_for_it(stylekit_recipe, monkeypatch, signum):
    real = outputs.image_writer

    def signalled(image, path, mark=None):
        write = real(image, path, mark)

        def writer(handle):
            os.kill(os.getpid(), signum)  # as the image is being written
            write(handle)
        return writer

    monkeypatch.setattr(outputs, "image_writer", signalled)
    status, _, err = run_cli("run", str(stylekit_recipe))
    out = stylekit_recipe.parent / "out"
    assert status == 128 + signum and "Traceback" not in err
    assert names(out) == ["result.json", "result.png"], "the image and its record, and no temporary file"
    assert json.loads((out / "result.json").read_text())["status"] == "finished"
    assert err.splitlines()[-1] == (f"interrupted ({signal.Signals(signum).name}) as the run ended: "
                                    f"{out / 'result.png'} was written first")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "the handlers are put back"


def test_a_second_signal_during_the_checkpoint_leaves_the_older_one(stylekit_recipe, monkeypatch):
    # The checkpoint of the interrupted step (the second write): a second Ctrl-C comes meanwhile.
    on_checkpoint_writes(monkeypatch, lambda n: n == 1 and os.kill(os.getpid(), signal.SIGINT))
    with_callback(monkeypatch, lambda info: info.step == 3 and os.kill(os.getpid(), signal.SIGINT))
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "output.checkpoint_every=2")
    out = stylekit_recipe.parent / "out"
    assert status == 130 and "Traceback" not in err
    assert names(out) == ["result.checkpoint.pt", "result.json", "result.png"]
    assert len(checkpoints.load(out / "result.checkpoint.pt", _plan(stylekit_recipe))["history"]) == 2
    assert (f"wrote {out / 'result.png'}; {out / 'result.checkpoint.pt'} holds step 2 (the checkpoint of step 3 is not "
            "kept: a second signal came first) - continue from step 2") in err


def test_a_second_ctrl_c_says_what_exists(stylekit_recipe, monkeypatch):
    def twice(info):
        if info.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    with_callback(monkeypatch, twice)
    status, _, err = run_cli("run", str(stylekit_recipe), "--steps", "9", "--set", "output.checkpoint_every=4",
                             "--set", "output.save_every=3")
    out = stylekit_recipe.parent / "out"
    assert status == 130 and "Traceback" not in err
    assert names(out) == ["result.checkpoint.pt", "result.step00003.png"]
    assert err.splitlines()[-1] == (
        f"interrupted - {out / 'result.png'} was not written; {out / 'result.checkpoint.pt'} holds step 4 of 9 - "
        f"continue from there with `stylekit run {stylekit_recipe} --steps 9 --set output.checkpoint_every=4 --set "
        f"output.save_every=3 --resume`; the intermediate images up to step 3 are kept (the last: "
        f"{out / 'result.step00003.png'})")
    assert not [p for p in out.iterdir() if p.name.endswith(TEMP_MARK)]


def _plan(recipe):
    import stylekit
    from stylekit.testing import tiny_registry

    return stylekit.load(recipe, registry=tiny_registry())


def test_an_output_name_too_long_for_the_files_beside_it_is_refused_before_the_run(stylekit_recipe):
    # 225 bytes fit in a name, but not its checkpoint's temporary file (.NAME.checkpoint.pt.PID.stylekit-tmp).
    out = stylekit_recipe.parent / ("x" * 221 + ".png")
    for command in ("validate", "run"):
        status, _, err = run_cli(command, str(stylekit_recipe), "-o", str(out))
        assert status == 2 and "Traceback" not in err
        assert err.strip().endswith("is 225 bytes long; the file system takes names of up to 255 bytes, and the files "
                                    "stylekit writes beside it make that at most 223 bytes for this name - choose a "
                                    "shorter output name"), err
    assert run_cli("validate", str(stylekit_recipe), "-o", str(out.with_name("x" * 219 + ".png")))[0] == 0
