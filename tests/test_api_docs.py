"""docs/api.md cannot rot: its examples run, in order, from a folder laid out like the
repository (recipes/ and examples/), with the real VGG-19 at small sizes."""

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BLOCK = re.compile(r"```python run\n(.*?)```", re.DOTALL)


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def repository_folder(tmp_path, monkeypatch):
    for name in ("recipes", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STYLEKIT_PLUGINS", raising=False)
    return tmp_path


def test_every_example_in_the_api_guide_runs(repository_folder):
    blocks = BLOCK.findall((ROOT / "docs" / "api.md").read_text())
    assert len(blocks) >= 5
    for index, code in enumerate(blocks):
        before = files_under(repository_folder)
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, f"docs/api.md example {index + 1}", "exec"), {})
        if "Images in memory" in code or "examples/chelsea.jpg" in code:
            assert files_under(repository_folder) == before, "the in-memory example wrote files"
    assert (repository_folder / "out" / "small.png").is_file() and (repository_folder / "out" / "small.json").is_file()


def test_the_readme_points_at_the_api_guide():
    readme = (ROOT / "README.md").read_text()
    assert "## From Python" in readme and "docs/api.md" in readme
