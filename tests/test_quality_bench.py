"""benchmarks/quality.py's own logic, without ../shared or any model run: the keys its peer caches
are kept under, the --set values that fix a recipe's output size, the strengths and peers it
accepts, pastiche's command and the reading of its log, the verdicts, tables and frontier lines
it writes from (made-up) judge figures, its plot and its contact sheets."""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmark's modules import each other by name
import quality  # noqa: E402
import quality_common  # noqa: E402
import quality_peers  # noqa: E402
import quality_plot  # noqa: E402
import quality_report  # noqa: E402
import quality_sheets  # noqa: E402

AVX2_FLAGS = {"fpu", "sse4_2", "avx", "avx2", "fma"}
PAIR = quality_common.Pair(Path("rainier.jpg"), Path("autumn-oak.jpg"))


def test_machine_key_matches_the_cache_filled_on_this_projects_cpu():
    # The background job filled bench-out/chapter-cache/AMD-EPYC-avx2-2cpu: the key must be that.
    assert quality_common.machine_key("AMD EPYC", AVX2_FLAGS, 2) == "AMD-EPYC-avx2-2cpu"


@pytest.mark.parametrize("flags, isa", [
    (AVX2_FLAGS | {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, "amx"),
    (AVX2_FLAGS | {"avx512f", "avx512_bf16"}, "avx512_bf16"),
    (AVX2_FLAGS | {"avx512f"}, "avx512f"),
    ({"fpu", "sse4_2"}, "other"),
])
def test_machine_key_names_the_widest_vector_isa(flags, isa):
    assert quality_common.machine_key(" Intel(R) Xeon(R) Platinum 8480+ ", flags, 16) == \
        f"Intel(R)-Xeon(R)-Platinum-8480+-{isa}-16cpu"


def test_machine_key_is_one_path_component():
    key = quality_common.machine_key("Weird/CPU @ 2.0GHz", set(), 4)
    assert "/" not in key and " " not in key and key.endswith("-other-4cpu")


# ---- peer caches -----------------------------------------------------------------------

def test_a_smoke_run_of_the_chapter_is_cached_apart_from_the_real_one(tmp_path):
    real = quality_peers.chapter_base(tmp_path, PAIR, quality_common.Size(450, 300), 500)
    smoke = quality_peers.chapter_base(tmp_path, PAIR, quality_common.Size(450, 300), 5)
    assert real.name == "rainier+autumn-oak-450x300"
    assert smoke != real and real.with_suffix(".png").name == "rainier+autumn-oak-450x300.png"


def test_pastiche_is_cached_per_version_size_and_steps(tmp_path):
    base = lambda w, h, steps, version: quality_peers.pastiche_base(tmp_path, PAIR, quality_common.Size(w, h), steps,
                                                                   version)
    real = base(300, 200, quality_peers.PASTICHE_STEPS, "1.6.0")
    assert real == tmp_path / "pastiche-1.6.0" / "rainier+autumn-oak-300x200"
    # The version's dots are in the folder, so the suffixes of the files stay whole.
    assert real.with_suffix(".png").name == "rainier+autumn-oak-300x200.png"
    others = {base(300, 200, 5, "1.6.0"), base(450, 300, 1000, "1.6.0"), base(300, 200, 1000, "1.7.0")}
    assert real not in others and len(others) == 3
    # Nor does pastiche share the chapter's files when both caches are given the same folder.
    assert quality_peers.chapter_base(tmp_path, PAIR, quality_common.Size(300, 200), 500) != real


# pastiche reads pixels with Image.getdata, which Pillow deprecates (its problem, not the benchmark's).
@pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")
def test_pastiche_runs_its_defaults_at_exactly_the_output_size(tmp_path):
    """The command sets only the size, the printing and the steps; given the photo made to W x H
    and --size max(W, H), pastiche's own loader works at W x H for a wide, tall or square photo."""
    from pastiche.pastiche import _parse_args, load_image

    assert _parse_args(["pastiche", "-c", "c.png", "-s", "s.png", "-o", "o.png"]).num_steps == quality_peers.PASTICHE_STEPS
    for w, h in ((96, 64), (64, 75), (40, 40)):
        photo = tmp_path / f"photo-{w}x{h}.jpg"
        Image.new("RGB", (w * 5 + 3, h * 5 + 1), "gray").save(photo)
        sized = quality_peers.sized_content(quality_common.Pair(photo, photo), quality_common.Size(w, h),
                                            tmp_path / f"sized-{w}x{h}.png")
        cmd = quality_peers.pastiche_command(sized, photo, quality_common.Size(w, h), tmp_path / "o.png", 1000, 10)
        assert cmd[cmd.index("--num-steps") + 1] == "1000" and cmd[cmd.index("--size") + 1] == str(max(w, h))
        assert tuple(load_image(str(sized), size=max(w, h)).shape) == (1, 3, h, w)


PASTICHE_LOG = """device[0]: cpu (0-29)
seed: 1
size: 300x200

step elapsed loss
---- ------- ----
0    6.8     27260518.00
1    7.5     27260518.00
2    8.1     27260496.00
3    8.8     1896634752.00
4    9.5     17222554.00
"""


def test_pastiches_step_time_is_read_from_its_table_after_its_start_up():
    rows = quality_peers.pastiche_progress(PASTICHE_LOG)
    assert rows == [(0, 6.8), (1, 7.5), (2, 8.1), (3, 8.8), (4, 9.5)]
    # Step 0 is the start-up (model and images); the steps are 1 to 4: (9.5 - 7.5) / 3.
    assert quality_peers.pastiche_step_s(rows) == pytest.approx(2.0 / 3)
    with pytest.raises(SystemExit, match="too few steps"):
        quality_peers.pastiche_step_s(rows[:2])


# ---- what to run -----------------------------------------------------------------------

def test_stages_are_scaled_so_the_last_one_is_the_asked_size(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[[stage]]\nwidth = 225\nsteps = 30\n[[stage]]\nwidth = 450\nsteps = 12\n")
    assert quality.size_sets(recipe, quality_common.Size(96, 64)) == [
        "output.width=96", "output.height=64", "stage[0].width=48", "stage[1].width=96", "stage[1].height=64"]
    recipe.write_text("[run]\nsteps = 10\n")
    assert quality.size_sets(recipe, quality_common.Size(96, 64)) == ["output.width=96", "output.height=64"]



def test_stages_given_whole_by_set_replace_the_recipes_and_are_scaled_like_them(tmp_path):
    # Another layout of the same recipe (one full-size stage): its stages go first, then the
    # sizes scaled from them, so that the scaled sizes are not replaced by the list.
    recipe = tmp_path / "r.toml"
    recipe.write_text("[[stage]]\nwidth = 225\nsteps = 30\n[[stage]]\nwidth = 450\nsteps = 12\n")
    entry = quality.Entry("one", recipe, ("stage=[{width=512, steps=33}]", "strength=2"), 2.0)
    pair = quality_common.Pair(tmp_path / "c.jpg", tmp_path / "s.jpg")
    cmd = quality.recipe_command(entry, pair, quality_common.Size(96, 64), tmp_path / "o.png")
    sets = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set"]
    assert sets == ["stage=[{width=512, steps=33}]", "output.width=96", "output.height=64",
                    "stage[0].width=96", "stage[0].height=64", "strength=2"]

def test_unknown_pair_names_are_refused_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        quality.select_pairs([Path("rainier.jpg")], [Path("autumn-oak.jpg")], "rainier+starry_night")
    assert exit_.value.code == 2
    assert "rainier+starry_night" in capsys.readouterr().err


def test_the_default_pairs_are_pairs_of_the_default_images_with_two_portraits_each_with_two_paintings():
    pairs = quality.select_pairs(quality.DEFAULT_CONTENTS, quality.DEFAULT_STYLES, ",".join(quality.DEFAULT_PAIRS))
    assert len(pairs) >= 8
    for portrait in quality_common.FACES:
        assert len([p for p in pairs if p.content.stem == portrait]) >= 2
        assert (quality_common.EXAMPLES / f"{portrait}.jpg").stat().st_size < 150_000


def test_strengths_are_parsed_once_each_in_order():
    assert quality.parse_strengths("0.25,0.5,1,2,4,8") == [0.25, 0.5, 1, 2, 4, 8]
    assert quality.parse_strengths(" 2, 1 ,2") == [2, 1]
    assert quality.parse_strengths("none") == [] and quality.parse_strengths("") == []


@pytest.mark.parametrize("text", ["0.5,0", "1,-2", "1,x", "inf", "nan", "1,,2"])
def test_a_strength_that_is_not_a_positive_number_is_refused_with_status_2(text, capsys):
    with pytest.raises(SystemExit) as exit_:
        quality.parse_strengths(text)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("quality.py: --strengths:") and err.count("\n") == 1


def test_peers_are_named_or_none(capsys):
    assert quality.parse_peers("chapter,pastiche") == ["chapter", "pastiche"]
    assert quality.parse_peers("none") == []
    with pytest.raises(SystemExit) as exit_:
        quality.parse_peers("chapter,pastich")
    assert exit_.value.code == 2 and "pastich" in capsys.readouterr().err


def test_the_curve_is_one_labelled_row_per_strength_after_the_common_sets():
    entries = quality.curve_entries("recipes/gatys.toml", [0.25, 2], ["run.seed=1"])
    assert [(e.label, e.sets, e.strength) for e in entries] == [
        ("gatys strength=0.25", ("run.seed=1", "strength=0.25"), 0.25), ("gatys strength=2", ("run.seed=1", "strength=2"), 2)]


def test_a_sweep_makes_one_labelled_row_per_value_after_the_common_sets():
    entries = quality.recipe_entries(["recipes/fast.toml", "mine=recipes/fast.toml"], ["run.seed=1"],
                                     "run.strength=0.5,1")
    assert [e.label for e in entries] == ["fast strength=0.5", "fast strength=1", "mine strength=0.5", "mine strength=1"]
    assert entries[0].sets == ("run.seed=1", "run.strength=0.5") and entries[0].strength is None


def test_without_shared_it_says_so_in_one_line_and_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(quality, "SHARED", tmp_path / "shared")
    with pytest.raises(SystemExit) as exit_:
        quality.main([])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shared" in err


# ---- verdicts, tables, frontier --------------------------------------------------------

def figures(content=0.5, structure=0.5, gram=0.5, swd=0.5) -> dict:
    return {"content_dist": content, "structure": structure, "style_dist": gram, "style_swd": swd}


def peer(key: str, judge: dict, wall_s: float) -> dict:
    return {"key": key, "label": quality_peers.PEERS[key], "image": f"{key}.png", "judge": judge, "wall_s": wall_s,
            "steps": 500, "record": {"steps": 500, "total_s": 1500.0},
            "probe": {"steps": 12, "step_s": wall_s / 500, "how": "median", "threads": 2}}


def strength(value: float, judge: dict, wall_s: float) -> dict:
    return {"label": f"gatys strength={value:g}", "strength": value, "wall_s": wall_s, "image": "g.png", "judge": judge}


def fake_result(curve: list[dict], recipes: list[dict] = ()) -> dict:
    """A pair whose chapter scores 0.5 on every figure in 1000 s, and pastiche 0.3 on content
    and structure but 0.7 on both style figures in 2000 s."""
    result = {"pair": "rainier+autumn-oak", "size": "300x200",
              "peers": [peer("chapter", figures(), 1000.0), peer("pastiche", figures(0.3, 0.3, 0.7, 0.7), 2000.0)],
              "curve": curve, "recipes": list(recipes)}
    quality_report.mark_rows(result)
    return result


def test_a_run_beats_a_peer_at_or_below_on_all_four_figures_ties_included_within_a_tenth_of_its_time():
    chapter = peer("chapter", figures(), 1000.0)
    v = lambda judge, wall: quality_report.verdict({"judge": judge, "wall_s": wall}, chapter)
    assert v(figures(), 100.0) == {"at_or_below": 4, "all_figures": True, "in_time": True, "passes": True,
                                   "time_ratio": 0.1}
    assert v(figures(), 100.1)["passes"] is False
    assert v(figures(swd=0.51), 10.0) | {"time_ratio": None} == {
        "at_or_below": 3, "all_figures": False, "in_time": True, "passes": False, "time_ratio": None}


def test_the_frontier_names_the_strengths_that_dominate_each_peer_or_the_closest_one():
    result = fake_result([strength(0.5, figures(0.2, 0.2, 0.6, 0.6), 50.0),   # beats pastiche only
                          strength(1, figures(0.4, 0.4, 0.45, 0.45), 50.0),   # beats the chapter only
                          strength(2, figures(0.6, 0.6, 0.3, 0.3), 50.0)])     # beats neither
    verdicts = quality_report.frontier(result)
    assert verdicts["chapter"]["strengths"] == ["1"] and verdicts["pastiche"]["strengths"] == ["0.5"]
    lines = quality_report.frontier_lines(result)
    assert lines == ["- chapter loop: **dominated**, by strength 1", "- pastiche: **dominated**, by strength 0.5"]

    slow = fake_result([strength(0.5, figures(0.2, 0.2, 0.6, 0.6), 250.0),  # all four, but over 1/10 of 2000 s
                        strength(2, figures(0.6, 0.6, 0.3, 0.3), 50.0)])
    near = quality_report.frontier(slow)["pastiche"]
    assert not near["dominated"] and near["closest"]["strength"] == "0.5" and near["closest"]["at_or_below"] == 4
    assert "- pastiche: **not dominated**; closest: strength 0.5 (4/4 figures at or below, 0.125 of its time)" \
        in quality_report.frontier_lines(slow)


def test_the_table_marks_each_run_against_each_peer_and_bolds_figures_at_or_below_every_peer():
    result = fake_result([strength(1, figures(0.4, 0.4, 0.45, 0.45), 50.0)],
                         [{"label": "fast", "strength": None, "wall_s": 300.0, "image": "f.png",
                           "judge": figures(0.3, 0.6, 0.5, 0.5)}])
    table = quality_report.pair_table(result)
    lines = table.splitlines()
    assert "| run | wall s | content | structure | Gram style | SWD style | vs chapter loop | vs pastiche |" in lines
    assert "| chapter loop | 1000 (est.) | 0.500 | 0.500 | 0.500 | 0.500 |  |  |" in lines
    assert "| gatys strength=1 | 50.0 | 0.400 | 0.400 | **0.450** | **0.450** | ✓ 0.050 | 2/4, 0.025 |" in lines
    assert "| fast | 300.0 | **0.300** | 0.600 | **0.500** | **0.500** | 3/4, 0.300 | 3/4, 0.150 |" in lines
    assert "- chapter loop: **dominated**, by strength 1" in lines
    assert any(line.startswith("- chapter loop (500 steps): 1000 s estimated now") for line in lines)


def test_the_summary_counts_the_pairs_where_some_strength_dominates_each_peer():
    good = fake_result([strength(1, figures(0.4, 0.4, 0.45, 0.45), 50.0)])  # beats the chapter only
    bad = fake_result([strength(1, figures(0.6, 0.6, 0.6, 0.6), 50.0)])
    bad["pair"] = "astronaut+starry_night"
    lines = quality_report.summary([good, bad])
    assert lines == ["- **chapter loop**: dominated by some strength on **1 of 2** pairs (not on astronaut+starry_night)",
                     "- **pastiche**: dominated by some strength on **0 of 2** pairs (not on rainier+autumn-oak, "
                     "astronaut+starry_night)"]


# ---- the plot and the sheets -----------------------------------------------------------

def test_the_plot_is_a_small_svg_with_the_strengths_and_the_peers(tmp_path):
    result = fake_result([strength(s, figures(0.1 * s, 0.1 * s, 0.6 / s, 0.6 / s), 50.0) for s in (0.25, 1, 4)])
    path = tmp_path / "plots" / "pair.svg"
    quality_plot.write_plot(result, path)
    svg = ET.parse(path).getroot()
    words = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    assert {"0.25", "1", "4", "chapter loop", "pastiche"} <= words
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}polyline"))) >= 2  # the curve in each panel
    assert path.stat().st_size < 100_000
    quality_plot.write_plot({**result, "peers": []}, path)  # no peers: still a plot
    ET.parse(path)


@pytest.mark.parametrize("value, top, step", [(0.87, 1.0, 0.25), (1.174, 1.5, 0.5), (0.0, 1e-6, 2.5e-7)])
def test_axis_tops_are_round_numbers_at_or_above_the_data(value, top, step):
    assert quality_plot.nice_top(value) == pytest.approx((top, step))


def test_a_portraits_sheet_shows_each_face_enlarged_under_its_picture(tmp_path):
    def image(name: str, size=(60, 60)) -> Path:
        path = tmp_path / name
        Image.new("RGB", size, "gray").save(path)
        return path
    result = fake_result([strength(1, figures(), 5.0)])
    result["size_wh"] = [60, 60]
    for row in result["peers"] + result["curve"]:
        row["image"] = str(image(Path(row["image"]).name))
    style = image("starry_night.jpg", (80, 50))
    sheets = {}
    for stem in ("astronaut", "rainier"):
        path = tmp_path / f"{stem}.jpg"
        quality_sheets.contact_sheet(result, quality_common.Pair(image(f"{stem}.jpg"), style), path)
        sheets[stem] = (result["sheet"]["faces"], Image.open(path).height)
    # The astronaut's face box is 0.30 x 0.35 of the photo: under a 240-px tile, 240 x 280 more.
    assert sheets["astronaut"][0] and not sheets["rainier"][0]
    assert sheets["astronaut"][1] - sheets["rainier"][1] == 280


def test_publish_names_its_files_apart_from_the_older_sections_sheets(tmp_path, monkeypatch):
    # docs/images/quality-<pair>.jpg are the sheets of the issue-14 section (other sizes and
    # runs): the frontier's must not overwrite them.
    monkeypatch.setattr(quality, "DOCS_IMAGES", tmp_path / "docs")
    (tmp_path / "plot.svg").write_text("<svg/>")
    (tmp_path / "sheet.jpg").write_bytes(b"jpeg")
    quality.publish({"pair": "a+b", "plot": {"path": str(tmp_path / "plot.svg")},
                     "sheet": {"path": str(tmp_path / "sheet.jpg"), "style_shown": True}})
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["quality-frontier-a+b.jpg",
                                                                    "quality-frontier-a+b.svg"]
