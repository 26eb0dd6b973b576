"""`stylekit batch`: a folder of small images with the tiny backbone, in one process and
under torchrun with two workers (gloo, CPU), one of them killed and the command rerun."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stylekit.files.images import open_rgb
from stylekit.testing import TINY_LOSSES, pattern, run_cli, write_recipe


@pytest.fixture
def photos(tmp_path):
    """Three content images, two styles, and a recipe."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "styles").mkdir()
    for i in range(3):
        pattern(40 + 4 * i, 60, "content").save(tmp_path / "photos" / f"p{i}.png")
    pattern(40, 40, "style").save(tmp_path / "styles" / "stripes.png")
    pattern(30, 50, "content").save(tmp_path / "styles" / "shapes.png")
    return tmp_path, write_recipe(tmp_path / "recipe")


def summary(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]


def test_every_pair_is_written_with_its_record_and_a_summary_line(photos):
    root, recipe = photos
    out = root / "out"
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos"), "--style", str(root / "styles"),
                             "-o", str(out))
    assert status == 0, err
    names = {f"p{i}.{s}" for i in range(3) for s in ("stripes", "shapes")}
    assert {p.stem for p in out.glob("*.png")} == names and {p.stem for p in out.glob("*.json")} == names
    lines = summary(out)
    assert sorted(line["item"] for line in lines) == sorted(names)
    assert all(line["status"] == "done" and line["seconds"] > 0 and "total" in line["losses"] for line in lines)
    assert "6 items, 0 already done, 6 to do" in err and "6 of 6 done" in err
    assert not (out / ".stylekit-batch").exists(), "the invocation's claims are removed when it ends"

    # A rerun finds everything done and does nothing.
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos"), "--style", str(root / "styles"),
                             "-o", str(out))
    assert status == 0 and "6 already done, 0 to do" in err and len(summary(out)) == 6


def test_batch_takes_steps_and_strength_as_run_does(photos):
    root, recipe = photos
    out = root / "out"
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos" / "p0.png"), "--style",
                             str(root / "styles" / "stripes.png"), "-o", str(out), "--steps", "2", "--strength", "0.5")
    assert status == 0, err
    record = json.loads((out / "p0.stripes.json").read_text())
    assert record["steps_done"] == 2 and record["recipe"]["run"]["steps"] == 2 and record["recipe"]["strength"] == 0.5


def test_a_batch_item_is_the_image_stylekit_run_gives(photos):
    root, recipe = photos
    run_cli("batch", str(recipe), "--content", str(root / "photos" / "p1.png"), "--style", str(root / "styles" / "stripes.png"),
            "-o", str(root / "out"))
    status, _, err = run_cli("run", str(recipe), "--content", str(root / "photos" / "p1.png"),
                             "--style", str(root / "styles" / "stripes.png"), "-o", str(root / "single.png"))
    assert status == 0, err
    assert open_rgb(str(root / "out" / "p1.stripes.png")).tobytes() == open_rgb(str(root / "single.png")).tobytes()


def test_each_style_file_is_decoded_once_per_process(photos, monkeypatch):
    import stylekit.recipe.load

    root, recipe = photos
    opened = []
    real = stylekit.recipe.load.open_rgb  # where a recipe's images are decoded

    def counting(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(stylekit.recipe.load, "open_rgb", counting)
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos"), "--style", str(root / "styles" / "stripes.png"),
                             "-o", str(root / "out"), "--set", "run.steps=1")
    assert status == 0, err
    # Three items, one style: the style is decoded once, each content once (it is one item's).
    assert sorted(opened) == ["p0.png", "p1.png", "p2.png", "stripes.png"]


def test_an_item_that_no_worker_did_fails_the_batch(photos, monkeypatch):
    """If a claim were lost (a worker that took an item died without a trace), the batch must
    not end as a success: exit status 3, and the item named as not done."""
    import stylekit.commands.batch

    root, recipe = photos
    real = stylekit.commands.batch.claim
    monkeypatch.setattr(stylekit.commands.batch, "claim", lambda out, generation, item: item.key != "p1.stripes" and real(
        out, generation, item))
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos"), "--style",
                             str(root / "styles" / "stripes.png"), "-o", str(root / "out"), "--steps", "1")
    assert status == 3 and "2 of 3 done; not done: p1.stripes" in err, err


def test_dry_run_lists_each_item_and_pairs_take_no_other_images(photos):
    root, recipe = photos
    out = root / "out"
    args = ["batch", str(recipe), "--content", str(root / "photos"), "--style", str(root / "styles" / "stripes.png")]
    assert run_cli(*args[:3], str(root / "photos" / "p0.png"), *args[4:], "-o", str(out), "--steps", "1")[0] == 0
    status, listed, err = run_cli(*args, "-o", str(out), "--dry-run")
    assert status == 0 and "3 items, 2 to do, 1 image per step" in err, err
    assert listed.splitlines() == [f"{'done ' if i == 0 else 'to do'}  {root / 'photos' / f'p{i}.png'} + "
                                   f"{root / 'styles' / 'stripes.png'} -> {out / f'p{i}.stripes.png'}" for i in range(3)]
    (root / "pairs.csv").write_text("content,style\nphotos/p0.png,styles/shapes.png\n")
    status, _, err = run_cli(*args, "--pairs", str(root / "pairs.csv"), "-o", str(out))
    assert status == 2 and "gives the content and style of every item - leave out --content and --style" in err


def test_the_recipe_s_own_output_is_not_the_batch_s_concern(photos):
    # A run of the recipe wrote x.jpg and x.json: the recipe's x.png would be refused (its
    # record would replace x.json), but the batch writes only into -o.
    root, recipe = photos
    recipe.write_text(recipe.read_text().replace('path = "out/result.png"', 'path = "out/x.png"'))
    assert 'path = "out/x.png"' in recipe.read_text()
    assert run_cli("run", str(recipe), "-o", str(recipe.parent / "out" / "x.jpg"), "--steps", "1")[0] == 0
    assert run_cli("validate", str(recipe))[0] == 2
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos"), "-o", str(root / "b"), "--dry-run")
    assert status == 0, err


def test_a_worker_keeps_only_the_styles_it_used_last():
    # A batch over thousands of styles must not hold every one's features on the device.
    from stylekit.run.build import STYLES_KEPT, Reuse

    reuse = Reuse()
    for style in range(STYLES_KEPT):
        reuse.style_images[style] = f"decoded {style}"
    assert reuse.style_images[0] == "decoded 0"  # read again: now the most recently used
    reuse.style_images[STYLES_KEPT] = "one more"
    assert 0 in reuse.style_images and 1 not in reuse.style_images  # the least recently used went
    for style in range(100, 100 + 3 * STYLES_KEPT):
        reuse.style_images[style] = f"decoded {style}"
    assert len(reuse.style_images) == STYLES_KEPT and 100 + 3 * STYLES_KEPT - 1 in reuse.style_images
    assert reuse.style_features.size == 4 * STYLES_KEPT


def test_a_style_file_replaced_in_place_is_decoded_again(tmp_path):
    """Replaced by one of the same size with its modification time kept (`cp -p`, rsync -t):
    still a new key, so a later item does not get the old pixels."""
    from stylekit.recipe.load import _decoded_key
    from stylekit.recipe.schema import ImagesSpec

    spec = ImagesSpec(content="c.png", style=["s.bmp"])
    style = tmp_path / "s.bmp"
    pattern(16, 16, "style").save(style)
    before, stat = _decoded_key(str(style), spec), style.stat()
    replacement = tmp_path / "new.bmp"
    pattern(16, 16, "content").save(replacement)
    assert replacement.stat().st_size == stat.st_size
    os.replace(replacement, style)
    os.utime(style, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _decoded_key(str(style), spec) != before


def test_pairs_from_a_manifest_csv_and_jsonl(photos):
    root, recipe = photos
    (root / "pairs.csv").write_text("content,style\nphotos/p0.png,styles/shapes.png\nphotos/p2.png,styles/stripes.png\n")
    (root / "pairs.jsonl").write_text('{"content": "photos/p1.png", "style": "styles/shapes.png"}\n')
    for manifest, expected in (("pairs.csv", {"p0.shapes", "p2.stripes"}), ("pairs.jsonl", {"p1.shapes"})):
        out = root / manifest.replace(".", "-")
        status, _, err = run_cli("batch", str(recipe), "--pairs", str(root / manifest), "-o", str(out))
        assert status == 0, err
        assert {p.stem for p in out.glob("*.png")} == expected


def test_an_unreadable_image_fails_its_item_only(photos):
    root, recipe = photos
    (root / "photos" / "broken.png").write_text("not an image")
    out = root / "out"
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos"), "--style", str(root / "styles" / "shapes.png"),
                             "-o", str(out))
    assert status == 3 and "Traceback" not in err
    failed = [line for line in summary(out) if line["status"] == "failed"]
    assert [line["item"] for line in failed] == ["broken.shapes"] and "not a readable image" in failed[0]["error"]
    assert "3 of 4 done; not done: broken.shapes" in err
    assert not (out / ".stylekit-batch").exists()  # a failed item leaves no claim: a rerun retries it anyway


def test_claims_of_another_invocation_on_the_same_folder_are_left_alone(photos):
    root, recipe = photos
    out = root / "out"
    live = out / ".stylekit-batch" / "claims" / "another-invocation"  # e.g. a second command still running
    live.mkdir(parents=True)
    (live / "p0.shapes").write_text("otherhost 1234\n")
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos" / "p1.png"), "--style",
                             str(root / "styles" / "stripes.png"), "-o", str(out), "--set", "run.steps=1")
    assert status == 0, err
    assert [p.name for p in (out / ".stylekit-batch" / "claims").iterdir()] == ["another-invocation"]
    assert (live / "p0.shapes").read_text() == "otherhost 1234\n"


def test_two_items_with_one_output_name_are_refused(photos):
    root, recipe = photos
    (root / "more").mkdir()
    shutil.copy(root / "photos" / "p0.png", root / "more" / "p0.png")
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos"), "--content", str(root / "more"),
                             "-o", str(root / "out"))
    assert status == 2 and "would both be written to" in err and "p0.style.png" in err  # the recipe's style: no --style given


def test_bad_manifests_output_folders_and_paths_get_one_message_each(photos, monkeypatch):
    root, recipe = photos
    (root / "header.csv").write_text("photo,painting\nphotos/p0.png,styles/shapes.png\nphotos/p1.png,styles/shapes.png\n")
    (root / "latin1.csv").write_bytes("content,style\nphotos/caf\xe9.png,styles/shapes.png\n".encode("latin-1"))
    (root / "numbers.jsonl").write_text('{"content": 5, "style": "styles/shapes.png"}\n{bad\n')
    (root / "a-file").write_text("keep me")
    (root / "photos" / "p0.shapes.png").write_bytes((root / "photos" / "p0.png").read_bytes())
    cases = [
        (["--pairs", "header.csv", "-o", "out"], ["header.csv:1: the first line must name the columns content and style "
                                                  "(it names: photo, painting)"]),
        (["--pairs", "latin1.csv", "-o", "out"], ["latin1.csv: not UTF-8 text (byte 24) - save the manifest as UTF-8"]),
        (["--pairs", "numbers.jsonl", "-o", "out"], ["numbers.jsonl:2: not JSON",
                                                     "numbers.jsonl:1: content and style must be paths in quotes (text)"]),
        (["--content", "photos", "-o", "a-file"], ["-o a-file: a-file is a file, not a folder"]),
        (["--content", "photos", "--content", "nope.png", "-o", "out"], ["--content nope.png: no such file or folder"]),
        # The output folder is the content folder: p0.png's output p0.shapes.png is an input (it would count as done).
        (["--content", "photos", "--style", "styles/shapes.png", "-o", "photos"],
         ["the output of photos/p0.png with style styles/shapes.png would be photos/p0.shapes.png, one of the input images"]),
    ]
    monkeypatch.chdir(root)
    for args, said in cases:
        before = sorted(p for p in root.rglob("*"))
        status, _, err = run_cli("batch", str(recipe), *args)
        lines = err.splitlines()
        assert status == 2 and len(lines) == len(said), err
        assert all(line.startswith(f"error: {words}") for line, words in zip(lines, said)), err
        assert sorted(p for p in root.rglob("*")) == before  # nothing made, not even the output folder


def test_a_batch_into_its_content_folder_finds_the_same_items_when_run_again(photos):
    # Its outputs (with their run records) are not taken for new content images on the rerun.
    root, recipe = photos
    args = ["batch", str(recipe), "--content", str(root / "photos"), "--style", str(root / "styles" / "stripes.png"),
            "-o", str(root / "photos"), "--steps", "1"]
    status, _, err = run_cli(*args)
    assert status == 0 and "3 items, 0 already done" in err, err
    status, _, err = run_cli(*args)
    assert status == 0 and "3 items, 3 already done, 0 to do" in err, err
    # A photo of the user's that shares a record's name with an output is still an input.
    shutil.copy(root / "photos" / "p0.png", root / "photos" / "p0.stripes.jpg")
    status, listed, err = run_cli(*args, "--dry-run")
    assert status == 0 and "4 items, 1 to do" in err and "p0.stripes.jpg +" in listed, err


DRIVER = textwrap.dedent("""
    import os, signal, sys, time
    import stylekit.commands.batch
    from stylekit.commands.cli import main
    from stylekit.testing import tiny_registry

    append = stylekit.commands.batch.append_summary
    if os.environ.get("KILL_RANK") == os.environ.get("RANK"):  # this worker dies after its first item
        def append_then_die(out, entry):
            append(out, entry)
            os.kill(os.getpid(), signal.SIGKILL)
        stylekit.commands.batch.append_summary = append_then_die
    elif os.environ.get("KILL_RANK"):  # the other is slow, so that items are left when torchrun stops it
        def append_slowly(out, entry):
            append(out, entry)
            time.sleep(1)
        stylekit.commands.batch.append_summary = append_slowly
    sys.exit(main(sys.argv[1:], registry=tiny_registry()))
""")


def test_torchrun_two_workers_a_killed_worker_and_a_rerun_do_each_item_exactly_once(photos):
    root, recipe = photos
    pattern(44, 60, "content").save(root / "photos" / "p3.png")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    out = root / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(driver), "batch", str(recipe),
               "--content", str(root / "photos"), "--style", str(root / "styles" / "stripes.png"), "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**env, "KILL_RANK": "1"})
    assert first.returncode != 0, "a killed worker fails the command"
    done_before = {line["item"] for line in summary(out)}
    assert 1 <= len(done_before) < 4

    second = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stderr
    lines = summary(out)
    items = [line["item"] for line in lines]
    assert sorted(items) == sorted(f"p{i}.stripes" for i in range(4)), "each item done exactly once, none lost"
    assert all((out / f"p{i}.stripes.png").is_file() for i in range(4))
    # The rerun removed its own claims after the barrier; the killed invocation's stay (it
    # cannot be told from one still running elsewhere): docs/scale.md.
    assert len(list((out / ".stylekit-batch" / "claims").iterdir())) == 1


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("optimizer, params", [("adam", "lr = 0.05"), ("lbfgs", "lr = 0.5"),
                                               ("lbfgs", 'line_search = "strong_wolfe"')])
def test_images_optimized_together_come_out_as_they_would_alone(tmp_path, optimizer, params, stacked):
    """Same-size images in step: each as it would be alone, L-BFGS with its history (and
    line search) per image. Stacked into one backbone pass, as on a GPU, or one pass each.

    Checked in float64, the invariance of the method, not of one machine's kernels: oneDNN,
    MKL and ATen pick convolution and product kernels by batch size, ISA (AVX2, AVX-512,
    AMX) and cache, so in float32 a stacked image's gradient differs from its own run's in
    the last bits, and Adam (a step of about lr x sign(gradient) where the gradient is near
    zero) or a line search's branch turns that into 1e-4 within a few steps, more on some
    CPUs than on others. In float64 those reorderings are ~1e-16 relative; 8 steps that
    amplify a difference at most by lr / Adam's eps (0.05 / 1e-8 = 5e6) each would need
    most of the 7 decades between 1e-16 and the 1e-9 allowed here. Any coupling of the
    images (a shared optimizer state, a term evaluated on the wrong slice) is of the size of
    the images' own differences, about 0.1."""
    import torch

    from planning import three_in_step
    from stylekit.run.build import build_optimizer, build_scheduler
    from stylekit.run.loop import optimize, optimize_group
    from stylekit.run.stages import loop_options

    body = f'[optimizer]\nname = "{optimizer}"\n[optimizer.params]\n{params}\n[scheduler]\nname = "cosine"\n'
    smooth = TINY_LOSSES.split("[[loss]]\nname = \"tv\"")[0]
    assert "tv" not in smooth
    plans, objectives, inputs = three_in_step(tmp_path, write_recipe(tmp_path, smooth + body), 8)
    options = loop_options(plans[0], plans[0].stages[0])
    together = optimize_group(objectives, [images.start for images in inputs], build_optimizer(plans[0]),
                                 build_scheduler(plans[0]), options, plans[0].device, stacked=stacked)
    alone = [optimize(objective, images.start, build_optimizer(plans[0]), build_scheduler(plans[0]), options,
                      plans[0].device) for objective, images in zip(objectives, inputs)]
    for alone, joint in zip(alone, together):
        assert joint.image.dtype == torch.float64
        assert (joint.image - alone.image).abs().max() <= 1e-9
        for a, b in zip(torch.stack(alone.rows), torch.stack(joint.rows), strict=True):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert (together[0].image - together[2].image).abs().max() > 1e-2


def test_batch_size_gives_the_images_of_batch_size_one(photos):
    root, recipe = photos
    for i in range(3):
        pattern(40, 60, "content").rotate(180 * i).save(root / "photos" / f"q{i}.png")
    args = ["batch", str(recipe), "--content", str(root / "photos" / "q*.png"), "--style", str(root / "styles" / "shapes.png")]
    assert run_cli(*args, "-o", str(root / "one"))[0] == 0
    status, _, err = run_cli(*args, "-o", str(root / "three"), "--batch-size", "3")
    assert status == 0 and "3 images per step" in err, err
    from stylekit.files.images import to_tensor

    for i in range(3):
        a, b = (to_tensor(open_rgb(str(root / folder / f"q{i}.shapes.png")), (40, 64)) for folder in ("one", "three"))
        assert (a - b).abs().max() <= 1 / 255 + 1e-6  # within one 8-bit level: rounding of values 1e-5 apart


def test_batch_size_auto_comes_from_the_memory_estimate(photos, monkeypatch):
    import torch

    from stylekit.commands.batch import images_per_step
    from stylekit.run.estimate import estimate

    root, recipe = photos
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos"), "-o", str(root / "out"),
                             "--batch-size", "auto", "--dry-run")
    assert status == 0 and "batch size 1: on a CPU each image gets its own backbone pass" in err and "3 items, 3 to do" in err
    assert not (root / "out").exists()
    # Off the CPU: as many as fit in 80% of the free memory, from the estimate of one image.
    plan = __import__("planning").plan_for(recipe)
    found = estimate(plan, plan.stages[-1])
    free = 50 * found.total
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, free))
    size = images_per_step(plan.replace(device=torch.device("cuda")), "auto", __import__("io").StringIO())
    assert size == int((0.8 * free - found.weights) // (found.total - found.weights))
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos"), "-o", str(root / "out"),
                             "--batch-size", "0")
    assert status == 2 and "--batch-size 0: give a whole number" in err


def test_noise_init_and_a_recipe_without_images_give_the_solo_images(photos):
    root, recipe = photos
    for i in range(3):
        pattern(40, 60, "content").rotate(180 * i).save(root / "photos" / f"q{i}.png")
    text = recipe.read_text().replace('[images]\ncontent = "content.png"\nstyle = "style.png"\n', "[images]\ninit = \"noise\"\n")
    (root / "recipe" / "bare.toml").write_text(text)
    args = ["batch", str(root / "recipe" / "bare.toml"), "--content", str(root / "photos" / "q*.png"),
            "--style", str(root / "styles" / "shapes.png")]
    assert run_cli(*args, "-o", str(root / "one"))[0] == 0
    assert run_cli(*args, "-o", str(root / "two"), "--batch-size", "2")[0] == 0
    for i in range(3):
        a, b = (open_rgb(str(root / folder / f"q{i}.shapes.png")).tobytes() for folder in ("one", "two"))
        assert a == b
    record = json.loads((root / "two" / "q1.shapes.json").read_text())
    assert record["recipe"]["images"]["content"].endswith("q1.png") and record["recipe_file"].endswith("bare.toml")


def test_a_group_whose_images_all_diverge_fails_them_and_goes_on(photos):
    root, recipe = photos
    for i in range(2):
        pattern(40, 60, "content").rotate(180 * i).save(root / "photos" / f"q{i}.png")
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos" / "q*.png"), "-o", str(root / "out"),
                             "--batch-size", "2", "--set", "run.clamp=false", "--set", "optimizer.name=sgd",
                             "--set", "optimizer.params.lr=1e38")
    assert status == 3 and "Traceback" not in err
    assert [line["status"] for line in summary(root / "out")] == ["failed", "failed"]
    assert "went non-finite" in summary(root / "out")[0]["error"]


def test_odd_manifests_get_one_message_each(photos, monkeypatch):
    root, recipe = photos
    row = "photos/p0.png,styles/shapes.png\n"
    manifests = {
        "nul.csv": ("content,style\nphotos/p0\0.png,styles/shapes.png\n", "nul.csv:2: a path cannot contain a NUL character (\\0)"),
        "nul.jsonl": ('{"content": "photos/p0\\u0000.png", "style": "styles/shapes.png"}\n',
                      "nul.jsonl:1: a path cannot contain a NUL character (\\0)"),
        "wide.csv": ("content,style\n" + "x" * 200_000 + ",styles/shapes.png\n",
                     "wide.csv:2: not CSV that can be read (field larger than field limit (131072))"),
        "long.jsonl": (json.dumps({"content": "x" * 5000, "style": "styles/shapes.png"}) + "\n",
                       "long.jsonl:1: a path of 5,000 bytes, longer than a path can be"),
        "deep.jsonl": ("[" * 100_000 + "\n", "deep.jsonl:1: not JSON this program can read (nested too deeply)"),
        "empty.csv": ("content,style\n", "empty.csv: lists no pairs"),
        "repeated.csv": ("content,style\n" + row * 5000, "repeated.csv: the pair photos/p0.png + styles/shapes.png is "
                         "listed already (line 2) - remove the repeated lines (the same problem on 4,999 lines: 3-5001)"),
        # U+2028 is a line break to str.splitlines, not to JSON: the object stays one line
        "separator.jsonl": ('{"content": "photos/p0.png", "style": "styles/shapes.png", "note": "a\u2028b"}\n'
                            '{"content": "photos/p0.png"}\n', "separator.jsonl:2: each row needs a content and a style path"),
    }
    monkeypatch.chdir(root)
    for name, (text, said) in manifests.items():
        (root / name).write_text(text, encoding="utf-8")
        status, _, err = run_cli("batch", str(recipe), "--pairs", name, "-o", "out", "--dry-run")
        assert status == 2 and "Traceback" not in err, err
        [line] = err.splitlines()
        assert line.startswith(f"error: {said}"), (name, line[:300])


def test_an_output_name_too_long_fails_its_item_only(photos):
    root, recipe = photos
    long = root / "photos" / ("p" * 240 + ".png")  # fits; its output p...p.stripes.png (252 bytes) with its record does not
    shutil.copy(root / "photos" / "p0.png", long)
    out = root / "out"
    out.mkdir()  # where the name is tried: a folder that exists
    args = ["batch", str(recipe), "--content", str(root / "photos"), "--style", str(root / "styles" / "stripes.png"),
            "-o", str(out), "--steps", "1"]
    status, listed, err = run_cli(*args, "--dry-run")
    assert status == 0 and "4 items, 3 to do, 1 will fail" in err, err
    [fails] = [line for line in listed.splitlines() if line.startswith("fails")]
    assert fails.endswith("bytes for this name - rename the content or style image") and "is 252 bytes long" in fails
    status, _, err = run_cli(*args)
    assert status == 3 and "Traceback" not in err
    assert "3 to do, 1 will fail" in err and "3 of 4 done" in err
    [failed] = [line for line in summary(out) if line["status"] == "failed"]
    assert failed["item"] == "p" * 240 + ".stripes" and "is 252 bytes long" in failed["error"]
    assert sorted(p.name for p in out.glob("*.png")) == [f"p{i}.stripes.png" for i in range(3)]


def test_pairs_need_no_style_of_the_recipe(photos):
    root, recipe = photos
    (recipe.parent / "style.png").unlink()  # the recipe's own style: every row names its own
    (root / "pairs.csv").write_text("content,style\nphotos/p0.png,styles/shapes.png\n")
    status, _, err = run_cli("batch", str(recipe), "--pairs", str(root / "pairs.csv"), "-o", str(root / "out"),
                             "--steps", "1")
    assert status == 0, err
    assert (root / "out" / "p0.shapes.png").is_file()


def test_a_second_ctrl_c_says_which_items_are_done(photos, monkeypatch):
    # It used to say "interrupted - nothing was written" with two items in the folder.
    import stylekit.run.session

    root, recipe = photos
    real, calls = stylekit.run.session.run_group, []

    def third_interrupted(plans, *args, **kwargs):  # a batch runs each group, of one here, together
        calls.append(plans)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a second Ctrl-C during the third item's run
        return real(plans, *args, **kwargs)

    monkeypatch.setattr(stylekit.run.session, "run_group", third_interrupted)
    out = root / "out"
    status, _, err = run_cli("batch", str(recipe), "--content", str(root / "photos"), "--style",
                             str(root / "styles" / "stripes.png"), "-o", str(out), "--steps", "1")
    assert status == 130 and "Traceback" not in err
    assert err.splitlines()[-1] == (f"interrupted - 2 of 3 items done in {out} (the item in progress is not written); "
                                    "rerun the same command to go on")
    assert sorted(p.name for p in out.glob("*.png")) == ["p0.stripes.png", "p1.stripes.png"]
