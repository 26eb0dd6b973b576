"""benchmarks/quality.py's own logic, without ../shared or any run: the key its chapter cache is
kept under, the --set values that fix a recipe's output size, and the verdicts and tables it
writes from (fake) judge figures."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("quality_bench", ROOT / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(spec)
sys.modules["quality_bench"] = quality  # dataclasses look their module up while the class is made
spec.loader.exec_module(quality)

AVX2_FLAGS = {"fpu", "sse4_2", "avx", "avx2", "fma"}


def test_machine_key_matches_the_cache_filled_on_this_projects_cpu():
    # The background job filled bench-out/chapter-cache/AMD-EPYC-avx2-2cpu: the key must be that.
    assert quality.machine_key("AMD EPYC", AVX2_FLAGS, 2) == "AMD-EPYC-avx2-2cpu"


@pytest.mark.parametrize("flags, isa", [
    (AVX2_FLAGS | {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, "amx"),
    (AVX2_FLAGS | {"avx512f", "avx512_bf16"}, "avx512_bf16"),
    (AVX2_FLAGS | {"avx512f"}, "avx512f"),
    ({"fpu", "sse4_2"}, "other"),
])
def test_machine_key_names_the_widest_vector_isa(flags, isa):
    assert quality.machine_key(" Intel(R) Xeon(R) Platinum 8480+ ", flags, 16) == \
        f"Intel(R)-Xeon(R)-Platinum-8480+-{isa}-16cpu"


def test_machine_key_is_one_path_component():
    key = quality.machine_key("Weird/CPU @ 2.0GHz", set(), 4)
    assert "/" not in key and " " not in key and key.endswith("-other-4cpu")


def test_a_smoke_run_of_the_chapter_is_cached_apart_from_the_real_one(tmp_path):
    pair = quality.Pair(Path("rainier.jpg"), Path("autumn-oak.jpg"))
    real = quality.chapter_base(tmp_path, pair, quality.Size(450, 300), 500)
    smoke = quality.chapter_base(tmp_path, pair, quality.Size(450, 300), 5)
    assert real.name == "rainier+autumn-oak-450x300"
    assert smoke != real and real.with_suffix(".png").name == "rainier+autumn-oak-450x300.png"


def test_stages_are_scaled_so_the_last_one_is_the_asked_size(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[[stage]]\nwidth = 225\nsteps = 30\n[[stage]]\nwidth = 450\nsteps = 12\n")
    assert quality.size_sets(recipe, quality.Size(96, 64)) == [
        "output.width=96", "output.height=64", "stage[0].width=48", "stage[1].width=96", "stage[1].height=64"]
    recipe.write_text("[run]\nsteps = 10\n")
    assert quality.size_sets(recipe, quality.Size(96, 64)) == ["output.width=96", "output.height=64"]


def test_unknown_pair_names_are_refused_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        quality.select_pairs([Path("rainier.jpg")], [Path("autumn-oak.jpg")], "rainier+starry_night")
    assert exit_.value.code == 2
    assert "rainier+starry_night" in capsys.readouterr().err


def fake_result(content_dist: float, wall_s: float) -> dict:
    """A pair where the chapter scores 0.5 on every figure and its loop is estimated at 1000 s."""
    chapter = {"image": "c.png", "record": {"steps": 500, "total_s": 1500.0},
               "judge": dict.fromkeys(quality.FIGURES, 0.5)}
    row = {"label": "gatys", "wall_s": wall_s, "image": "g.png",
           "judge": {**dict.fromkeys(quality.FIGURES, 0.5), "content_dist": content_dist}}
    row["verdict"] = quality.verdict(row, chapter, 1000.0)
    return {"pair": "rainier+autumn-oak", "size": "450x300", "chapter": chapter, "recipes": [row],
            "probe": {"steps": 12, "median_step_s": 2.0, "estimated_loop_s": 1000.0}}


def test_verdict_counts_ties_as_at_or_below_and_the_tenth_of_time_inclusive():
    assert fake_result(0.5, 100.0)["recipes"][0]["verdict"] == {"all_figures": True, "in_time": True, "passes": True}
    assert fake_result(0.5, 100.1)["recipes"][0]["verdict"]["passes"] is False
    assert fake_result(0.51, 10.0)["recipes"][0]["verdict"] == {"all_figures": False, "in_time": True, "passes": False}


def test_table_marks_the_passing_row_and_the_summary_counts_pairs():
    good, slow = fake_result(0.4, 90.0), fake_result(0.4, 200.0)
    table = quality.pair_table(good)
    row = next(line for line in table.splitlines() if line.startswith("| gatys"))
    assert row == "| gatys | 90.0 | 0.090 | **0.400** | **0.500** | **0.500** | **0.500** | ✓ |"
    assert "| chapter loop | 1000 (est.) | 1 |" in table
    assert "✓" not in quality.pair_table(slow)
    (line,) = quality.summary([good, slow])
    assert "**1 of 2** pairs" in line and "all four figures: 2" in line and "within the time: 1" in line


def test_without_shared_it_says_so_in_one_line_and_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(quality, "SHARED", tmp_path / "shared")
    with pytest.raises(SystemExit) as exit_:
        quality.main([])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shared" in err


def test_a_sweep_makes_one_labelled_row_per_value_after_the_common_sets():
    entries = quality.recipe_entries(["recipes/fast.toml", "mine=recipes/fast.toml"], ["run.seed=1"],
                                     "run.strength=0.5,1")
    assert [e.label for e in entries] == ["fast strength=0.5", "fast strength=1", "mine strength=0.5", "mine strength=1"]
    assert entries[0].sets == ("run.seed=1", "run.strength=0.5")
