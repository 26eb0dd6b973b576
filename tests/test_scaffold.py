"""`stylekit new-plugin`: for each kind, and for several kinds in one package, the package it
writes installs with pip, is listed by `stylekit plugins`, and passes its own tests unchanged
(the contract check of each kind, and a recipe run on the tiny backbone)."""

import os
import subprocess
import sys

import pytest

from stylekit.plugins.registry import load_registry
from stylekit.plugins.scaffold import SCAFFOLD_KINDS as KINDS
from stylekit.testing import run_cli

#: One package with three kinds, asked for both ways: a comma list and a repeated --kind.
MIXED = ("loss", "scheduler", "backbone")


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    """One package of each kind and one of several kinds, written by the command and
    pip-installed into `site`."""
    root = tmp_path_factory.mktemp("scaffold")
    commands = {f"my_{kind}": ["--kind", kind] for kind in KINDS}
    commands["my_mix"] = ["--kind", "loss,scheduler", "--kind", "backbone", "--kind", "loss"]
    for name, kinds in commands.items():
        status, out, err = run_cli("new-plugin", name, *kinds, "--dir", str(root))
        assert status == 0, err
        assert f"wrote {root / f'stylekit-{name.replace(chr(95), chr(45))}'}" in out
    folders = {name: root / f"stylekit-{name.replace('_', '-')}" for name in commands}
    written = {name: sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) for name, folder in folders.items()}
    site = root / "site"  # after listing what was written: pip adds build folders
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
                    *map(str, folders.values())], check=True, capture_output=True)
    return root, site, written, folders


def test_each_kind_writes_pyproject_module_readme_and_tests(scaffolded):
    _, _, written, folders = scaffolded
    for kind in KINDS:
        assert written[f"my_{kind}"] == ["README.md", "pyproject.toml", f"stylekit_my_{kind}.py", "tests",
                                         f"tests/test_my_{kind}.py"]
        pyproject = (folders[f"my_{kind}"] / "pyproject.toml").read_text()
        assert f'my_{kind} = "stylekit_my_{kind}"' in pyproject and f'py-modules = ["stylekit_my_{kind}"]' in pyproject
        # A backbone made from torchvision's network says it needs torchvision.
        assert ('"torchvision>=0.19"' in pyproject) == (kind == "backbone")


def test_several_kinds_make_one_package_with_a_module_each(scaffolded):
    _, _, written, folders = scaffolded
    assert written["my_mix"] == sorted(["README.md", "pyproject.toml", "stylekit_my_mix", "stylekit_my_mix/__init__.py",
                                        *(f"stylekit_my_mix/{kind}.py" for kind in MIXED), "tests",
                                        *(f"tests/test_my_mix_{kind}.py" for kind in MIXED)])
    pyproject = (folders["my_mix"] / "pyproject.toml").read_text()
    assert 'my_mix = "stylekit_my_mix"' in pyproject and 'packages = ["stylekit_my_mix"]' in pyproject
    assert 'dependencies = ["stylekit>=0.1", "torchvision>=0.19"]' in pyproject
    assert "the 'my_mix' loss, scheduler and backbone" in pyproject
    init = (folders["my_mix"] / "stylekit_my_mix" / "__init__.py").read_text()
    assert "from stylekit_my_mix.scheduler import MyMixScheduler, register_schedulers" in init


def test_installed_packages_are_listed(scaffolded, monkeypatch):
    _, site, _, _ = scaffolded
    monkeypatch.syspath_prepend(str(site))
    registry = load_registry()
    for kind in KINDS:
        assert registry.components[kind][f"my_{kind}"].plugin.package == f"stylekit-my-{kind}"
    for kind in MIXED:
        assert registry.components[kind]["my_mix"].plugin.package == "stylekit-my-mix"
    assert not registry.broken


@pytest.mark.slow  # ~25 s: a second pytest with torch, for 34 tests; `./test -m slow` runs it
def test_scaffolded_packages_pass_their_own_tests(scaffolded):
    root, site, _, folders = scaffolded
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *(str(folder / "tests") for folder in folders.values())],
                            capture_output=True, text=True, cwd=root,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "34 passed" in result.stdout


def test_an_unknown_kind_is_named_with_the_way_out(tmp_path):
    status, _, err = run_cli("new-plugin", "edges", "--kind", "loss,lost", "--dir", str(tmp_path))
    assert status == 2
    assert ("error: --kind: unknown kind 'lost' - did you mean 'loss'? - choose from loss, backbone, optimizer, "
            "scheduler, flow (several: --kind loss,scheduler)") in err
    assert not any(tmp_path.iterdir())


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
