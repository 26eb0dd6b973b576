"""A stage that ends once its loss has stopped falling (`[[stage]] min_gain`, `gain_steps`):
it ends where the lowest loss fell by less than that fraction over that many steps, the next
stage takes over, the run's total shrinks so that its last step is its total, a resumed run
ends where an uninterrupted one does, and images in step each end as they would alone."""

import dataclasses

import pytest
import torch

import stylekit
from planning import three_in_step
from stylekit.run.engine import Loop, LoopOptions, gained_little
from stylekit.run.loop import _settled, optimize, optimize_group
from stylekit.testing import TINY_LOSSES, run_cli, tiny_registry, write_recipe

LBFGS = '[optimizer]\nname = "lbfgs"\n'
STAGES = ("\n[[stage]]\nwidth = 32\nsteps = 60\nmin_gain = 0.05\ngain_steps = 3\n"
          "\n[[stage]]\nwidth = 64\nsteps = 4\n")


def test_gained_little_compares_the_lowest_loss_over_the_window():
    assert not gained_little([10.0, 9.0, 8.0], 3, 0.05)  # not yet window + 1 steps
    assert not gained_little([10.0, 9.0, 8.0, 7.0], 3, 0.05)  # 30% over 3 steps
    assert gained_little([10.0, 9.9, 9.8, 9.7], 3, 0.05)  # 3%
    assert not gained_little([10.0, 9.9, 9.8, 9.4], 3, 0.05)  # 6%


def test_a_rise_is_not_taken_for_arrival():
    # L-BFGS's probes and steps taken back raise the loss for a step; the lowest so far does not.
    loop = Loop(torch.zeros(1), None, None, None)
    for step, total in enumerate([10.0, 8.0, 30.0, 7.0, 6.0], 1):
        loop.rows.append(torch.tensor([total]))
        loop.step = step
    assert not _settled(loop, LoopOptions(steps=10, min_gain=0.05, gain_steps=3))
    assert loop.lowest == [10.0, 8.0, 8.0, 7.0, 6.0]  # 8 -> 6 over the last 3 steps: 25%


def run_seen(plan, **kwargs):
    seen = []
    result = stylekit.stylize(plan, callback=lambda info: seen.append((info.stage, info.step, info.total,
                                                                        info.image.clone())), **kwargs)
    return seen, result


def test_a_stage_ends_once_its_loss_stops_falling_and_the_run_total_follows(tmp_path):
    plan = stylekit.load(write_recipe(tmp_path, TINY_LOSSES + LBFGS + STAGES), registry=tiny_registry())
    seen, result = run_seen(plan)
    first = [step for stage, step, _, _ in seen if stage == 1]
    assert 3 < len(first) < 60, "the first stage ends early, and not before its window"
    assert [step for stage, step, _, _ in seen if stage == 2] == list(range(len(first) + 1, len(first) + 5))
    assert result.status == "finished" and result.steps_done == len(first) + 4 == len(result.history)
    totals = [total for _, _, total, _ in seen]
    assert set(totals[:len(first) - 1]) == {64} and set(totals[len(first) - 1:]) == {len(first) + 4}
    assert seen[-1][1] == seen[-1][2], "the last step is the total"
    lowest = [min(row["total"] for row in result.history[:k + 1]) for k in range(len(first))]
    assert gained_little(lowest, 3, 0.05) and not gained_little(lowest[:-1], 3, 0.05), "where the rule says"
    # Without min_gain every step is taken.
    whole = stylekit.load(write_recipe(tmp_path, TINY_LOSSES + LBFGS + STAGES.replace("min_gain = 0.05", "min_gain = 0")),
                          registry=tiny_registry())
    assert stylekit.stylize(whole).steps_done == 64


# Stopped before its first stage settled, at the step it settled (the checkpoint must say the
# stage is over), and in the stage after.
@pytest.mark.parametrize("stop_in", ["stage 1", "settled", "stage 2"])
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, stop_in):
    plan = stylekit.load(write_recipe(tmp_path, TINY_LOSSES + LBFGS + STAGES), registry=tiny_registry())
    seen, whole = run_seen(plan)
    settled_at = max(step for stage, step, _, _ in seen if stage == 1)
    stop_at = {"stage 1": 2, "settled": settled_at, "stage 2": seen[-2][1]}[stop_in]
    checkpoint = tmp_path / "c.pt"
    stopped = stylekit.stylize(plan, callback=lambda info: info.step == stop_at and info.stop(), checkpoint=checkpoint)
    assert stopped.status == "stopped" and stopped.steps_done == stop_at
    resumed_seen, resumed = run_seen(plan, checkpoint=checkpoint, resume=True)
    assert resumed.status == "finished" and resumed.steps_done == whole.steps_done
    assert resumed.record["stage_steps"] == whole.record["stage_steps"] == [settled_at, 4]
    assert [s[:3] for s in resumed_seen] == [s[:3] for s in seen[stop_at:]]
    assert (resumed_seen[-1][3] - seen[-1][3]).abs().max() <= 1e-6
    assert torch.equal(resumed.tensor, whole.tensor)
    if stop_in == "settled":  # the command line, resumed there, says the steps the run takes
        kept = tmp_path / "out" / "result.checkpoint.pt"
        kept.parent.mkdir(exist_ok=True)
        kept.write_bytes(checkpoint.read_bytes())
        status, _, err = run_cli("run", str(tmp_path / "recipe.toml"), "--resume")
        assert status == 0 and f"at step {settled_at}/{settled_at + 4}" in err, err


def test_images_in_step_each_end_their_stage_as_they_would_alone(tmp_path):
    # In float64, as tests/test_batch.py's images in step: each image's loss settles at its
    # own step, the others go on, and each comes out as it would alone.
    from stylekit.run.build import build_optimizer, build_scheduler
    from stylekit.run.stages import loop_options

    plans, objectives, inputs = three_in_step(tmp_path, write_recipe(tmp_path, TINY_LOSSES + LBFGS), 60)
    options = dataclasses.replace(loop_options(plans[0], plans[0].stages[0]), min_gain=0.02, gain_steps=3)
    together = optimize_group(objectives, [images.start for images in inputs], build_optimizer(plans[0]),
                              build_scheduler(plans[0]), options, plans[0].device, stacked=True)
    alone = [optimize(objective, images.start, build_optimizer(plans[0]), build_scheduler(plans[0]), options,
                      plans[0].device) for objective, images in zip(objectives, inputs)]
    for own, joint in zip(alone, together):
        assert joint.settled and own.settled and joint.steps_done == own.steps_done < 60
        # Some 20 L-BFGS steps at lr 1 amplify float64's reorderings (1e-16, stacked against
        # alone) far less than to 1e-6; a coupling of the images would be of the size of their
        # own differences, about 0.1 (the last line).
        assert (joint.image - own.image).abs().max() <= 1e-6
    assert len({end.steps_done for end in together}) > 1, "the images settle at steps of their own"
    assert (together[0].image - together[2].image).abs().max() > 1e-2


def test_the_command_line_says_at_most_how_a_stage_may_end_and_where_it_ended(tmp_path):
    import re

    recipe = write_recipe(tmp_path, TINY_LOSSES + LBFGS + STAGES)
    status, _, err = run_cli("run", str(recipe))
    assert status == 0, err
    assert "at most 64 steps" in err
    assert "stage 1/2: 32 px wide, at most 60 steps (fewer once 3 steps lower the loss by less than 5%)" in err
    assert "stage 2/2: 64 px wide, 4 steps" in err
    ended = re.search(r"stage 1/2 ended at step (\d+) of the run: its last 3 steps lowered the loss by ([\d.]+)%, less "
                      r"than min_gain \(5%\); (\d+) steps in all", err)
    assert ended, err
    step, gain, total = int(ended[1]), float(ended[2]), int(ended[3])
    assert 3 < step < 60 and 0 <= gain < 5 and total == step + 4
    # Stopped in the stage after it, the run knows the steps it takes, not only the most.
    from stylekit.commands.run import steps_of

    plan = stylekit.load(recipe, registry=tiny_registry())
    result = stylekit.stylize(plan, callback=lambda info: info.step == step + 2 and info.stop())
    assert result.status == "stopped" and result.stage == 2 and result.total_steps == total
    assert steps_of(plan, result.total_steps, result.stage) == str(total)
    assert steps_of(plan) == "at most 64"


def test_a_stage_too_short_for_its_window_is_said_and_the_dry_run_says_at_most(tmp_path):
    # As when --steps shares out fewer steps than the recipe's: the stage takes them all.
    recipe = write_recipe(tmp_path, TINY_LOSSES + STAGES.replace("steps = 60", "steps = 3"))
    status, _, err = run_cli("run", str(recipe))
    assert status == 0 and "Traceback" not in err
    assert ("warning: stage 1: min_gain cannot end it sooner - it has 3 steps, no more than its gain_steps (3); give "
            "it more steps or fewer gain_steps") in err
    assert "ended at step" not in err
    status, _, err = run_cli("run", str(recipe), "--set", "stage[0].min_gain=0", "--set", "stage[0].gain_steps=2")
    assert status == 0 and ("warning: stage 1: gain_steps does nothing without min_gain - set min_gain (0.02: the "
                            "stage ends once gain_steps steps lower the loss by less than 2%) or leave gain_steps out") in err
    status, out, _ = run_cli("run", str(write_recipe(tmp_path, TINY_LOSSES + STAGES)), "--dry-run")
    assert status == 0 and "stage 1: 32x24, at most 60 steps" in out and "stage 2: 64x48, 4 steps" in out


def test_in_a_group_an_image_whose_last_stage_ended_is_finished_when_another_is_stopped(tmp_path):
    from planning import plan_for
    from stylekit.run.stages import run_plans
    from stylekit.testing import pattern

    recipe = write_recipe(tmp_path, TINY_LOSSES + LBFGS + "\n[[stage]]\nwidth = 32\nsteps = 60\nmin_gain = 0.05\n"
                                                           "gain_steps = 3\n")
    for i, kind in enumerate(("content", "style")):
        pattern(48, 64, kind).save(tmp_path / f"c{i}.png")
    plans = [plan_for(recipe, **{"images.content": f"c{i}.png"}) for i in range(2)]
    alone = [run_plans([plan], [None])[0].steps_done for plan in plans]
    assert alone[0] != alone[1], "the two images settle at steps of their own"
    first, later = sorted(range(2), key=lambda i: alone[i])
    callbacks = [None, None]
    callbacks[later] = lambda info: info.step == alone[first] + 1 and info.stop()
    results = run_plans(plans, callbacks)
    assert (results[first].status, results[first].steps_done) == ("finished", alone[first])
    assert (results[later].status, results[later].steps_done) == ("stopped", alone[first] + 1)


def test_a_checkpoints_stage_steps_must_add_up(tmp_path):
    from stylekit.run import checkpoints

    plan = stylekit.load(write_recipe(tmp_path, TINY_LOSSES + LBFGS + STAGES), registry=tiny_registry())
    seen, _ = run_seen(plan)
    checkpoint = tmp_path / "c.pt"
    stylekit.stylize(plan, callback=lambda info: info.step == seen[-2][1] and info.stop(), checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    assert state["stage"] == 1 and state["stage_steps"] == [seen[-2][1] - state["loop"]["step"]]
    for wrong, said in (([state["stage_steps"][0] - 1], "its stages before took"), ([0], "'stage_steps' is not"),
                        ([1, 2], "'stage_steps' is not")):
        torch.save({**state, "stage_steps": wrong}, checkpoint)
        with pytest.raises(stylekit.UserError, match=said):
            checkpoints.load(checkpoint, plan)
