"""Controls from Gatys et al. 2017 and the peers: stages, init, colour, EMA, several styles,
style scale, loss plot and strip; plumbing checked with the tiny backbone."""

import json
from pathlib import Path

import torch

from planning import plan_for, run_stage
from stylekit.run import colour
from stylekit.run.build import stage_images
from stylekit.files.images import open_rgb, to_tensor
from stylekit.files.report import COLOURS, STAGE_LINE
from stylekit.recipe.plan import Stage
from stylekit.testing import TINY_LOSSES, pattern, run_cli, write_recipe


def images_for(recipe, **overrides):
    """The first stage's images of `recipe` with overrides."""
    plan = plan_for(recipe, **overrides)
    return stage_images(plan, plan.stages[0])


def test_stages_run_coarse_to_fine_and_end_at_the_last_size(stylekit_recipe):
    with open(stylekit_recipe, "a") as f:
        f.write("\n[[stage]]\nwidth = 32\nsteps = 3\n\n[[stage]]\nwidth = 64\nsteps = 4\n")
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "run.progress_every=1")
    assert status == 0, err
    out = stylekit_recipe.parent / "out"
    assert open_rgb(str(out / "result.png")).size == (64, 48)
    record = json.loads((out / "result.json").read_text())
    assert len(record["losses"]) == 7
    assert "stage 2/2: 64 px wide, 4 steps" in err and "step     7/7" in err


def test_size_and_steps_given_on_the_command_line_apply_to_a_staged_recipe(stylekit_recipe):
    # In the file, stages take precedence over output.width and run.steps; given as overrides
    # they mean the whole run: the stages keep their proportions and share the steps as before.
    with open(stylekit_recipe, "a") as f:
        f.write("\n[[stage]]\nwidth = 32\nsteps = 3\n\n[[stage]]\nwidth = 64\nsteps = 6\n")
    as_written = plan_for(stylekit_recipe).stages
    assert [(s.width, s.steps) for s in as_written] == [(32, 3), (64, 6)]
    scaled = plan_for(stylekit_recipe, **{"output.width": 96, "run.steps": 30}).stages
    assert [(s.width, s.steps) for s in scaled] == [(48, 10), (96, 20)]
    both = plan_for(stylekit_recipe, **{"output.width": 40, "output.height": 20}).stages
    assert [(s.width, s.height) for s in both] == [(20, 10), (40, 20)]
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "output.height=20")
    assert status == 2 and "--set output.height=20: output.height: this recipe runs in stages" in err


GATYS = Path(__file__).parent.parent / "recipes" / "gatys.toml"  # 256 then 512 px wide, 50 + 20 steps


def test_a_stage_scaled_too_small_names_the_override_and_the_output_width_that_is_enough():
    # The user gave output.width, not stage[0].width: the message names the flag, says the
    # stage was scaled from it, and gives the least output.width whose coarse stage fits.
    status, _, err = run_cli("validate", str(GATYS), "--set", "output.width=32")
    assert status == 2 and "gatys.toml:" not in err
    assert err.startswith("error: --set output.width=32: stage[0].width: the output would be 16x11 pixels in stage 1, "
                          "too small for backbone 'vgg19'")
    assert "stage 1 is scaled from the output.width (32) given, as the recipe's stages (256 and 512 px wide) are: " \
           "give output.width = 47 or more, or use a recipe without stages" in err
    assert run_cli("validate", str(GATYS), "--set", "output.width=46")[0] == 2
    assert run_cli("validate", str(GATYS), "--set", "output.width=47")[0] == 0  # the advice is exact


def test_a_style_image_too_small_in_a_scaled_stage_names_the_override_too(tmp_path):
    # A wide style image in a square output: the style, not the output, is what is too
    # small in the coarse stage, and again the user gave output.width, not the stage's.
    from PIL import Image

    Image.new("RGB", (1000, 50), "red").save(tmp_path / "wide.png")
    Image.new("RGB", (100, 100), "blue").save(tmp_path / "square.png")
    status, _, err = run_cli("validate", str(GATYS), "--content", str(tmp_path / "square.png"), "--style",
                             str(tmp_path / "wide.png"), "--set", "output.width=64")
    assert status == 2 and "gatys.toml:" not in err, err
    assert err.startswith("error: --set output.width=64: stage[0].width: the style image would be resized to "), err
    least = int(err.split("give output.width = ")[1].split()[0])
    for width, code in ((least, 0), (least - 1, 2)):  # the width it names is the least that passes
        assert run_cli("validate", str(GATYS), "--content", str(tmp_path / "square.png"), "--style",
                       str(tmp_path / "wide.png"), "--set", f"output.width={width}")[0] == code, width


def staged(tmp_path, output: str, stages: str, content=(100, 100)):
    """A VGG-19 recipe reading relu5_1 (16 px on each side) that runs in `stages`."""
    from PIL import Image

    Image.new("RGB", content, "red").save(tmp_path / "c.png")
    Image.new("RGB", (100, 100), "blue").save(tmp_path / "s.png")
    recipe = tmp_path / "staged.toml"
    recipe.write_text(f'[images]\ncontent = "c.png"\nstyle = "s.png"\n[output]\npath = "o.png"\n{output}\n{stages}\n'
                      '[backbone]\nname = "vgg19"\n[[loss]]\nname = "gram"\nlayers = ["relu5_1"]\n')
    return recipe


def advised(recipe, width: int, height: int | None = None) -> tuple[int, int | None]:
    """The output (width, height) that `stylekit validate recipe` with that size overridden
    says is enough, after checking that it passes and is the least in the proportion given:
    one pixel narrower (the height scaled along), the recipe still fails."""
    def validate(w, h):
        return run_cli("validate", str(recipe), "--set", f"output.width={w}", *(["--set", f"output.height={h}"] if h else []))

    status, _, err = validate(width, height)
    assert status == 2, err
    said = err.split("give output.width = ")[1].split(" or more")[0].split(" and output.height = ")
    least = int(said[0]), int(said[1]) if height else None
    assert validate(*least)[0] == 0
    assert validate(least[0] - 1, height and round(height * (least[0] - 1) / width))[0] == 2
    return least


def test_a_scaled_stage_is_not_told_of_an_output_height_the_user_did_not_give(tmp_path):
    # output.height is the recipe's (ignored: the stages set the sizes), not an override: the
    # coarse stage, without a height of its own, takes the wide content's aspect.
    recipe = staged(tmp_path, "height = 300", "[[stage]]\nwidth = 50\nsteps = 1\n[[stage]]\nwidth = 100\n"
                    "height = 80\nsteps = 1", content=(200, 50))
    status, _, err = run_cli("validate", str(recipe), "--set", "output.width=40")
    assert err.startswith("error: --set output.width=40: stage[0].width: the output would be 20x5 pixels in stage 1")
    assert "output.height" not in err and "scaled from the output.width (40) given" in err  # was: (40) and output.height (300)
    assert advised(recipe, 40) == (123, None)  # was: output.width = 40, the width that fails


def test_a_scaled_stage_too_short_names_the_output_height_given(tmp_path):
    recipe = staged(tmp_path, "", "[[stage]]\nwidth = 50\nheight = 50\nsteps = 1\n[[stage]]\nwidth = 100\n"
                    "height = 100\nsteps = 1")
    args = ("--set", "output.width=40", "--set", "output.height=10")
    status, _, err = run_cli("validate", str(recipe), *args)
    assert err.startswith("error: --set output.height=10: stage[0].height: the output would be 20x5 pixels"), err
    assert "scaled from the output.width (40) and output.height (10) given" in err
    assert advised(recipe, 40, 10) == (123, 31)  # was: output.width = 40, the width that fails, with no height
    recipe.write_text(recipe.read_text().replace("height = 50\n", "height = 5\n"))  # not scaled: the recipe's line
    status, _, err = run_cli("validate", str(recipe))
    assert err.startswith("error: " + str(recipe) + ":9: stage[0].height: the output would be 50x5 pixels"), err
    assert err.endswith("set both sides to at least 16 (width = 50, height = 16)\n")  # was: output.width, output.height


def test_a_stage_height_scaled_past_the_schema_names_the_output_width_given(tmp_path):
    # The recipe's line says 2000; the 20000 that fails came from --set output.width.
    recipe = staged(tmp_path, "", "[[stage]]\nwidth = 100\nheight = 2000\nsteps = 1")
    status, _, err = run_cli("validate", str(recipe), "--set", "output.width=1000")
    assert status == 2 and "staged.toml" not in err, err
    assert err.startswith("error: --set output.width=1000: stage[0].height: ") and "(got 20000)" in err


def test_sizes_and_steps_given_as_text_scale_the_stages_as_numbers_do():
    # Overrides are read laxly (an environment variable gives text): "64" must mean 64 for
    # the stages too, not leave them at the recipe's sizes while output.width says 64.
    import stylekit

    as_text = stylekit.load(GATYS, {"output.width": "64", "run.steps": "7"})
    as_numbers = stylekit.load(GATYS, {"output.width": 64, "run.steps": 7})
    assert [(s.width, s.steps) for s in as_text.stages] == [(s.width, s.steps) for s in as_numbers.stages]
    assert as_numbers.stages[-1].width == 64 and sum(s.steps for s in as_numbers.stages) == 7


def test_overrides_that_cannot_be_carried_into_the_stages_say_so_once():
    status, _, err = run_cli("validate", str(GATYS), "--steps", "1")  # was: 2 steps run, quietly
    assert status == 2
    assert err == ("error: --steps 1: run.steps: this recipe runs in 2 stages ([[stage]]) of at least one step each - "
                   "give 2 steps or more, or set the stages' steps (stage[N].steps)\n")
    status, _, err = run_cli("validate", str(GATYS), "--set", "output.width=20000")
    assert status == 2 and err.count("error:") == 1 and "--set output.width=20000: output.width:" in err  # not per stage


def test_an_override_of_the_stages_steps_leaves_the_width_to_scale_their_sizes_and_the_reverse():
    # Was: any stage[...] override froze the stages as the recipe has them, so --width 300
    # with stage[1].steps=33 wrote a 512-pixel image and exited 0.
    import stylekit

    plan = stylekit.load(GATYS, {"output.width": 300, "stage[1].steps": 33})
    assert [(s.width, s.steps) for s in plan.stages] == [(150, 50), (300, 33)]
    plan = stylekit.load(GATYS, {"run.steps": 35, "stage[0].width": 128})
    assert [s.width for s in plan.stages] == [128, 512] and sum(s.steps for s in plan.stages) == 35


def test_the_stages_sizes_or_steps_given_against_the_whole_run_s_are_refused_naming_both():
    status, _, err = run_cli("validate", str(GATYS), "--width", "300", "--set", "stage[1].width=400")
    assert status == 2
    assert err.startswith("error: --width 300: output.width: --set stage[1].width=400 sets the stages' sizes too - "
                          "give either output.width, and the recipe's stages scale to it, or every stage's width, "
                          "the last stage the output's size, not both"), err
    # One stage's width given: the other would stay the recipe's, whatever --width says.
    assert run_cli("validate", str(GATYS), "--width", "300", "--set", "stage[1].width=300")[0] == 2
    status, _, err = run_cli("validate", str(GATYS), "--steps", "40", "--set", "stage[1].steps=33")
    assert status == 2 and err.startswith("error: --steps 40: run.steps: --set stage[1].steps=33 sets the stages' "
                                          "steps too"), err


def test_the_stages_sizes_and_steps_given_in_full_may_say_what_the_whole_run_s_say():
    import stylekit

    plan = stylekit.load(GATYS, {"output.width": 300, "stage[0].width": 150, "stage[1].width": 300,
                                 "run.steps": 34, "stage[0].steps": 1, "stage[1].steps": 33})
    assert [(s.width, s.steps) for s in plan.stages] == [(150, 1), (300, 33)]


def test_steps_shared_out_add_up_to_the_steps_given():
    from stylekit.recipe.stage_fit import fit_stages_to_overrides

    data = {"stage": [{"width": 8, "steps": 50}, {"width": 16, "steps": 50}, {"width": 32, "steps": 1}], "run": {"steps": 4}}
    fit_stages_to_overrides(data, {("run", "steps")})
    steps = [s["steps"] for s in data["stage"]]
    assert sum(steps) == 4 and min(steps) == 1  # rounding gave 2 + 2 + 1 (5): one is taken back


def test_later_stage_starts_from_the_upsampled_result(stylekit_recipe):
    previous = to_tensor(pattern(24, 32, "content"), (24, 32))
    images = stage_images(plan_for(stylekit_recipe), Stage(64, None, 2), previous=previous)
    assert images.start.shape == (1, 3, 48, 64)
    assert (torch.nn.functional.avg_pool2d(images.start, 2) - previous).abs().mean() < 0.02


def test_init_choices(stylekit_recipe, tmp_path):
    plain = images_for(stylekit_recipe)
    assert plain.start is plain.content
    from_style = images_for(stylekit_recipe, **{"images.init": "style"})
    assert from_style.start.shape == from_style.content.shape
    noise = images_for(stylekit_recipe, **{"images.init": "noise"}).start
    assert 0.4 < noise.mean() < 0.6 and noise.std() > 0.2
    pattern(10, 10, "style").save(tmp_path / "start.png")
    from_file = images_for(stylekit_recipe, **{"images.init": "start.png"}).start
    assert from_file.shape == (1, 3, 48, 64)


def test_missing_init_file_is_reported(stylekit_recipe):
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "images.init='nowhere.png'")
    assert status == 2 and "images.init: image file not found" in err


def test_histogram_matching_gives_the_style_the_contents_colour_statistics():
    torch.manual_seed(0)
    content = torch.rand(1, 3, 16, 16) * torch.tensor([0.3, 0.6, 0.2]).view(1, 3, 1, 1) + 0.2
    style = torch.rand(1, 3, 16, 16) * 0.5
    matched = colour.match_colour_histogram(style, content)
    assert torch.allclose(matched.mean(dim=(2, 3)), content.mean(dim=(2, 3)), atol=0.02)
    assert torch.allclose(torch.cov(matched.reshape(3, -1)), torch.cov(content.reshape(3, -1)), atol=0.005)


def test_luminance_transfer_keeps_the_content_chrominance(stylekit_recipe):
    images = images_for(stylekit_recipe, **{"images.preserve_colors": "luminance"})
    assert torch.allclose(images.content[:, 0], images.content[:, 1])  # grey: luminance only
    assert torch.allclose(images.styles[0][:, 0], images.styles[0][:, 2])
    result = torch.rand_like(images.content)
    final = images.postprocess(result)
    content_rgb = images_for(stylekit_recipe).content
    # Equal up to clamping where the combination leaves the RGB gamut.
    assert (colour.yiq(final)[:, 0] - colour.yiq(result)[:, 0]).abs().mean() < 0.03
    assert (colour.yiq(final)[:, 1:] - colour.yiq(content_rgb)[:, 1:]).abs().mean() < 0.03


def test_histogram_mode_changes_the_style_targets(stylekit_recipe):
    plain, matched = images_for(stylekit_recipe), images_for(stylekit_recipe, **{"images.preserve_colors": "histogram"})
    assert not torch.allclose(plain.styles[0], matched.styles[0])
    assert torch.allclose(matched.styles[0].mean(dim=(2, 3)), plain.content.mean(dim=(2, 3)), atol=0.03)


def test_ema_output_is_the_average_of_iterates(stylekit_recipe):
    iterates = []
    _, _, images = run_stage(plan_for(stylekit_recipe, **{"run.steps": 3}),
                             on_step=lambda loop: iterates.append(loop.output.clone()))
    result, _, _ = run_stage(plan_for(stylekit_recipe, **{"run.ema_decay": 0.5, "run.steps": 3}))
    expected = images.content.clone()
    for it in iterates:
        expected = 0.5 * expected + 0.5 * it
    assert torch.allclose(result.image, expected, atol=1e-5)


def test_several_styles_with_blend_weights(stylekit_recipe):
    images = images_for(stylekit_recipe, **{"images.style": ["style.png", "content.png"], "images.style_weights": [3, 1]})
    assert images.style_weights == [0.75, 0.25] and len(images.styles) == 2


def test_style_scale_sizes_the_style_image_independently(stylekit_recipe):
    images = images_for(stylekit_recipe, **{"images.style_scale": 0.5})
    assert images.styles[0].shape[-2:] == (24, 32)


def test_plot_and_strip(stylekit_recipe):
    status, _, err = run_cli("run", str(stylekit_recipe), "--steps", "4", "--set", "output.save_every=2", "--set", "output.plot=true")
    assert status == 0, err
    out = stylekit_recipe.parent / "out"
    plot = open_rgb(str(out / "result.losses.png"))
    assert plot.size == (640, 400) and len(plot.getcolors(maxcolors=100000)) > 3  # curves drawn, not blank
    assert open_rgb(str(out / "result.strip.png")).size == (2 * 171, 128)  # step 2 and the final image
    assert STAGE_LINE not in dict((c, n) for n, c in plot.getcolors(maxcolors=100000))  # one stage: no line


def test_the_loss_plot_marks_where_each_stage_begins(tmp_path):
    recipe = write_recipe(tmp_path, TINY_LOSSES + "\n[[stage]]\nwidth = 32\nsteps = 3\n\n[[stage]]\nwidth = 64\nsteps = 2\n")
    status, _, err = run_cli("run", str(recipe), "--set", "output.plot=true")
    assert status == 0, err
    plot = open_rgb(str(tmp_path / "out" / "result.losses.png"))
    # Steps 1..5 span x = 60..510 (the plot's margins); stage 2 begins between steps 3 and 4.
    boundary = round(60 + 450 * 2.5 / 4)
    columns = {x for x in range(plot.width) for y in range(30, 350, 2) if plot.getpixel((x, y)) == STAGE_LINE}
    assert boundary in columns  # the dashed line, with "stage 1" and "stage 2" written beside it
    assert {x for x in columns if plot.getpixel((x, 300)) == STAGE_LINE or plot.getpixel((x, 302)) == STAGE_LINE} == {boundary}
    # The curves break there: no line climbs from the last step of stage 1 to the first of stage 2.
    assert not {plot.getpixel((x, y)) for x in (boundary - 1, boundary, boundary + 1) for y in range(20, 360)} & set(COLOURS)


def test_masked_gram_is_the_gram_of_the_region():
    from stylekit.builtins.losses import gram, masked_gram

    features = torch.rand(1, 4, 6, 8)
    assert torch.allclose(masked_gram(features, torch.ones(1, 1, 6, 8)), gram(features))
    left = torch.zeros(1, 1, 6, 8)
    left[..., :4] = 1
    assert torch.allclose(masked_gram(features, left, "hw"), gram(features[..., :4], "hw"), atol=1e-6)


def test_style_masks_put_each_style_in_its_region(tmp_path):
    """Real Caffe VGG-19: left half styled by stripes, right half by a flat colour field."""
    from PIL import Image

    from stylekit.builtins.losses import gram
    from stylekit.plugins.registry import load_registry

    pattern(48, 64, "content").save(tmp_path / "content.png")
    pattern(48, 64, "style").save(tmp_path / "stripes.png")
    Image.new("RGB", (64, 48), (200, 60, 40)).save(tmp_path / "red.png")
    left = Image.new("L", (64, 48), 0)
    left.paste(255, (0, 0, 32, 48))
    left.save(tmp_path / "left.png")
    Image.eval(left, lambda v: 255 - v).save(tmp_path / "right.png")
    recipe = tmp_path / "masks.toml"
    recipe.write_text("""
[images]
content = "content.png"
style = ["stripes.png", "red.png"]
style_masks = ["left.png", "right.png"]
[output]
path = "out.png"
width = 64
[[loss]]
name = "gram"
weight = 1e3
layers = ["relu1_1", "relu2_1"]
[loss.params]
normalization = "hw"
relative = true
[optimizer]
name = "lbfgs"
[run]
steps = 40
precision = "fp32"
""")
    registry = load_registry(env={"STYLEKIT_PLUGINS": "none"})
    loop, objective, images = run_stage(plan_for(recipe, registry))
    result = loop.image
    net = objective.backbone
    layer = frozenset(["relu1_1"])
    with torch.no_grad():
        targets = [gram(net.features(s, layer)["relu1_1"], "hw") for s in images.styles]
        halves = [gram(net.features(result[..., :, a:b], layer)["relu1_1"], "hw") for a, b in ((0, 28), (36, 64))]
    distance = [[((h - t).norm() / t.norm()).item() for t in targets] for h in halves]
    assert distance[0][0] < distance[0][1]  # left half: closer to the stripes
    assert distance[1][1] < distance[1][0]  # right half: closer to the red field
    assert (result[0, 0, :, 40:] > result[0, 2, :, 40:]).float().mean() > 0.8  # the right half turned red


def test_piped_progress_says_when_each_stage_starts_the_first_too(stylekit_recipe):
    with open(stylekit_recipe, "a") as f:
        f.write("\n[[stage]]\nwidth = 32\nsteps = 2\n\n[[stage]]\nwidth = 64\nsteps = 2\n")
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "run.progress_every=1")
    assert status == 0, err
    lines = [line.strip() for line in err.splitlines()]
    first, second = lines.index("stage 1/2: 32 px wide, 2 steps"), lines.index("stage 2/2: 64 px wide, 2 steps")
    # each heads its own steps: the first before any step, the second after stage 1's two
    assert first < second and not any(line.startswith("step") for line in lines[:first])
    assert sum(line.startswith("step") for line in lines[first:second]) == 2
