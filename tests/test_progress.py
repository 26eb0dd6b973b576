"""The progress display: plain lines off a terminal, a bar on one, nothing with --quiet;
the losses (a device wait) are read only when something is shown."""

import io

from stepinfo_fakes import Counter, fake_steps
from stylekit.commands.progress import ProgressDisplay
from stylekit.testing import run_cli


def test_plain_lines_every_n_steps_read_losses_only_for_them():
    out, counter = io.StringIO(), Counter()
    display = ProgressDisplay(out, every=5)
    assert not display.use_bar  # a StringIO is no terminal
    for info in fake_steps(20, counter):
        display(info)
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["1/20", "5/20", "10/20", "15/20", "20/20"]
    assert lines[-1].startswith("step    20/20  total 5  content 3  gram 2  (") and lines[-1].endswith(" s/step)")
    assert counter.loss_reads == len(lines)


def test_bar_redraws_in_place_and_reads_losses_at_most_twice_a_second():
    out, counter = io.StringIO(), Counter()
    display = ProgressDisplay(out, every=10, bar=True)
    for info in fake_steps(300, counter, stages=2):
        display(info)
        if info.step == 150:
            print("stage 2/2: 64 px wide, 150 steps", file=display)
    display.close()
    text = out.getvalue()
    assert "\r" in text and "300/300" in text and "stage 2/2" in text
    assert "total 0.333" in text  # the last step's losses are always shown
    # The 300 fake steps take milliseconds: only the first and the last redraw are due.
    assert counter.loss_reads <= 3
    # The runner's line sits on a line of its own, not glued to the bar.
    assert any(line.strip() == "stage 2/2: 64 px wide, 150 steps" for line in text.replace("\r", "\n").splitlines())


def test_quiet_and_every_zero_show_nothing_and_read_nothing():
    quiet, silent_steps = ProgressDisplay(io.StringIO(), quiet=True, bar=True), ProgressDisplay(io.StringIO(), every=0)
    for display in (quiet, silent_steps):
        counter = Counter()
        for info in fake_steps(20, counter):
            display(info)
        print("wrote out.png", file=display)
        display.close()
        assert counter.loss_reads == 0
    assert quiet.stream.getvalue() == ""
    assert silent_steps.stream.getvalue() == "wrote out.png\n"  # the runner's own lines still show


def test_run_quiet_prints_nothing(stylekit_recipe):
    status, out, err = run_cli("run", str(stylekit_recipe), "--quiet", "--set", "run.progress_every=1")
    assert status == 0 and out == "" and err == ""
    assert (stylekit_recipe.parent / "out" / "result.png").exists()


def test_bar_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert ProgressDisplay(Terminal()).use_bar
    assert not ProgressDisplay(io.StringIO()).use_bar
    assert not ProgressDisplay(Terminal(), quiet=True).use_bar


def test_plain_lines_rate_is_loop_time_per_step():
    out = io.StringIO()
    display = ProgressDisplay(out, every=5)
    for info in fake_steps(10, Counter()):  # the fakes advance 0.01 s of loop time a step
        display(info)
    assert [line.rsplit("(", 1)[1] for line in out.getvalue().splitlines()] == ["0.010 s/step)"] * 3


def test_a_resumed_runs_rate_leaves_out_the_time_before_its_checkpoint():
    import dataclasses

    out = io.StringIO()
    display = ProgressDisplay(out, every=5)
    for info in fake_steps(20, Counter()):
        if info.step > 10:  # resumed at step 10, 30 s of loop time before the checkpoint
            display(dataclasses.replace(info, seconds=30 + info.seconds))
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["15/20", "20/20"]
    assert [line.rsplit("(", 1)[1] for line in lines] == ["0.010 s/step)"] * 2


def test_the_bar_ends_full_when_a_stage_ends_sooner():
    # [[stage]] min_gain: the run's total drops from 20 to 16 at step 6; the bar ends at 16/16, full.
    import dataclasses

    out = io.StringIO()
    display = ProgressDisplay(out, every=10, bar=True)
    for info in fake_steps(16, Counter()):
        display(dataclasses.replace(info, total=20 if info.step < 6 else 16))
    display.close()
    last = out.getvalue().replace("\r", "\n").splitlines()[-1]
    assert "16/16" in last and "100%" in last, last
