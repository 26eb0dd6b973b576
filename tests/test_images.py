"""Images as people have them: each odd kind of file is read as it looks in a viewer.
The files are those of the reliability corpus (tests/corpus/make_images.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylekit.errors import UserError
from stylekit.files.images import TEMP_MARK, _atomic_write, open_rgb, save_atomic
from stylekit.recipe.schema import ImagesSpec
from stylekit.testing import pattern

sys.path.insert(0, str(Path(__file__).parent / "corpus"))
from make_images import make  # noqa: E402


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def spec(**fields) -> ImagesSpec:
    return ImagesSpec(content="c.png", style="s.png", **fields)


def test_exif_orientation_is_applied(tmp_path):
    img = open_rgb(str(make("exif_rotated.jpg", tmp_path)))
    # Orientation 6: stored landscape, shown turned 90 degrees clockwise.
    expected = pattern(48, 64, "content").transpose(Image.Transpose.ROTATE_270)
    assert img.size == expected.size == (48, 64)
    # JPEG at quality 95 is within a few levels on these smooth shapes; a wrong turn is ~100 off.
    assert np.abs(pixels(img) - pixels(expected)).mean() < 4


@pytest.mark.parametrize("name", ["grey16.png", "float.tif"])
def test_high_depth_greys_are_scaled_not_clipped(tmp_path, name):
    # Mid-grey (32768 of 65535, or 0.5 of 1.0) is 128 of 255; Pillow's own convert gives 255.
    assert set(pixels(open_rgb(str(make(name, tmp_path)))).ravel()) == {128}


def test_palette_transparency_is_composited(tmp_path):
    path = make("palette_transparent.png", tmp_path)
    with Image.open(path) as raw:
        transparent = np.asarray(raw) == 0
        opaque_rgb = pixels(raw.convert("RGB"))
    img = pixels(open_rgb(str(path)))
    assert transparent.any() and (~transparent).any()
    assert (img[transparent] == 255).all()
    assert (img[~transparent] == opaque_rgb[~transparent]).all()


@pytest.mark.parametrize("background, value", [("white", 255), ("black", 0), ("#808080", 128)])
def test_alpha_is_composited_on_the_background(tmp_path, background, value):
    img = pixels(open_rgb(str(make("rgba_transparent.png", tmp_path)), spec(background=background)))
    assert (img[:, :32] == value).all()  # transparent half: the background
    assert (img[:, 32:] == 0).all()  # opaque black half: itself


def test_grey_with_alpha_is_composited(tmp_path):
    img = pixels(open_rgb(str(make("grey_alpha.png", tmp_path))))
    grey = pixels(pattern(48, 64, "content").convert("L"))
    assert (img[:, :32] == 255).all()
    assert (img[:, 32:, 0] == grey[:, 32:]).all()


def test_animation_uses_the_first_frame_and_says_so(tmp_path, capsys):
    path = make("animated.gif", tmp_path)
    with Image.open(path) as raw:
        first = pixels(raw.convert("RGB"))
    img = open_rgb(str(path), warn=True)
    assert (pixels(img) == first).all()
    assert capsys.readouterr().err.strip() == f"warning: {path}: an animated image with 3 frames - using the first frame"
    open_rgb(str(path))  # warn=False: the build step reads it again without repeating the warning
    assert capsys.readouterr().err == ""


def test_pixel_limit_refuses_before_decoding_and_can_be_raised(tmp_path):
    with pytest.raises(UserError, match=r"bomb.png is 100000x100000, 10,000,000,000 pixels, more than images.max_pixels"):
        open_rgb(str(make("bomb.png", tmp_path)))
    photo = tmp_path / "photo.png"
    pattern(48, 64, "content").save(photo)
    with pytest.raises(UserError, match="raise images.max_pixels"):
        open_rgb(str(photo), spec(max_pixels=1000))
    assert open_rgb(str(photo), spec(max_pixels=64 * 48)).size == (64, 48)


def test_truncated_files_fail_to_load(tmp_path):
    for name in ("truncated.jpg", "truncated.png"):
        with pytest.raises(UserError, match="not a readable image"):
            open_rgb(str(make(name, tmp_path)))


def test_a_file_that_cannot_be_read_is_told_apart_from_one_that_is_not_an_image(tmp_path, monkeypatch):
    # Run as root, permission bits do not stop a read: Pillow's open is made to fail as it would.
    photo = tmp_path / "locked.png"
    pattern(8, 8, "content").save(photo)

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(UserError, match=r"cannot read .*locked.png \(Permission denied\) - check that you may read it"):
        open_rgb(str(photo))


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    target = tmp_path / "result.png"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".result.png.{int(dead.stdout)}{TEMP_MARK}"
    alive = tmp_path / f".result.png.{os.getppid()}{TEMP_MARK}"  # a running process: maybe writing now
    other = tmp_path / f".other.png.{int(dead.stdout)}{TEMP_MARK}"  # another output's: not ours to judge
    for path in (stale, alive, other):
        path.write_bytes(b"")
    save_atomic(pattern(8, 8, "style"), target)
    assert not stale.exists() and alive.exists() and other.exists()
    assert Image.open(target).size == (8, 8)


def test_a_failed_write_leaves_no_temporary_file_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "record.json"
    target.write_text("old")

    def half_then_disk_full(handle):
        handle.write("{\"half\": ")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        _atomic_write(target, "w", half_then_disk_full)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_raised_pixel_limit_applies_to_the_load_time_check_too(tmp_path):
    from stylekit.testing import run_cli, write_recipe

    recipe = write_recipe(tmp_path)
    status, _, err = run_cli("validate", str(recipe), "--set", "images.max_pixels=1000")
    assert status == 2 and "more than images.max_pixels (1,000)" in err
    assert run_cli("validate", str(recipe), "--set", "images.max_pixels=3072") == (0, f"{recipe}: ok\n", "")
