"""`stylekit new-plugin`: for each kind, the package it writes installs with pip, is listed by
`stylekit plugins`, and passes its own tests unchanged (which run it in a recipe on the
tiny backbone)."""

import os
import subprocess
import sys

import pytest

from stylekit.plugins.registry import load_registry
from stylekit.plugins.scaffold import KINDS
from stylekit.testing import run_cli


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    """One package of each kind, written by the command and pip-installed into `site`."""
    root = tmp_path_factory.mktemp("scaffold")
    for kind in KINDS:
        status, out, err = run_cli("new-plugin", f"my_{kind}", "--kind", kind, "--dir", str(root))
        assert status == 0, err
        assert f"wrote {root / f'stylekit-my-{kind}'}" in out
    written = {kind: sorted(str(p.relative_to(root / f"stylekit-my-{kind}")) for p in (root / f"stylekit-my-{kind}").rglob("*"))
               for kind in KINDS}  # before pip adds its build folders
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
                    *(str(root / f"stylekit-my-{kind}") for kind in KINDS)], check=True, capture_output=True)
    return root, site, written


def test_each_kind_writes_pyproject_module_readme_and_tests(scaffolded):
    root, _, written = scaffolded
    for kind in KINDS:
        folder = root / f"stylekit-my-{kind}"
        assert written[kind] == ["README.md", "pyproject.toml", f"stylekit_my_{kind}.py", "tests", f"tests/test_my_{kind}.py"]
        assert f'my_{kind} = "stylekit_my_{kind}"' in (folder / "pyproject.toml").read_text()


def test_installed_packages_are_listed(scaffolded, monkeypatch):
    _, site, _ = scaffolded
    monkeypatch.syspath_prepend(str(site))
    registry = load_registry()
    for kind in KINDS:
        assert registry.components[kind][f"my_{kind}"].plugin.package == f"stylekit-my-{kind}"
    assert not registry.broken


@pytest.mark.slow  # ~10 s: a second pytest with torch, for 12 tests; `./test -m slow` runs it
def test_scaffolded_packages_pass_their_own_tests(scaffolded):
    root, site, _ = scaffolded
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *(str(root / f"stylekit-my-{kind}" / "tests") for kind in KINDS)],
                            capture_output=True, text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 passed" in result.stdout


def test_existing_folder_is_never_overwritten(tmp_path):
    (tmp_path / "stylekit-edges").mkdir()
    (tmp_path / "stylekit-edges" / "mine.py").write_text("keep me")
    status, _, err = run_cli("new-plugin", "edges", "--kind", "loss", "--dir", str(tmp_path))
    assert status == 2
    assert f"error: {tmp_path / 'stylekit-edges'} already exists - choose another name or move it away; nothing was written" in err
    assert [p.name for p in (tmp_path / "stylekit-edges").iterdir()] == ["mine.py"]


def test_bad_name_says_what_a_name_may_hold(tmp_path):
    status, _, err = run_cli("new-plugin", "9 lives", "--kind", "loss", "--dir", str(tmp_path))
    assert status == 2
    assert "error: plugin name '9 lives': use lower-case letters, digits and underscores, starting with a letter" in err
    assert not any(tmp_path.iterdir())
