"""The docs cannot rot: the plugin guide's packages are installed with pip and tested, its
recipe is run, and the hook and recipe references are regenerated and compared."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from stylekit.tools import docgen
from stylekit.contract import hookspecs
from stylekit.plugins.registry import load_registry
from stylekit.testing import run_cli, write_images

ROOT = Path(__file__).parent.parent
GUIDE = ROOT / "docs" / "plugins.md"
BLOCK = re.compile(r"```(\w+) file=(\S+)\n(.*?)```", re.DOTALL)


PACKAGES = ("stylekit-edges", "stylekit-vgg16", "stylekit-resnet", "stylekit-signum", "stylekit-warmup",
            "stylekit-farneback")


@pytest.fixture(scope="module")
def guide_packages(tmp_path_factory):
    """Every `file=` block of docs/plugins.md written out, and every package pip-installed."""
    root = tmp_path_factory.mktemp("guide")
    for _, name, text in BLOCK.findall(GUIDE.read_text()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
                    *(str(root / package) for package in PACKAGES)], check=True, capture_output=True)
    return root, site


def test_guide_has_a_package_of_each_kind():
    names = [name for _, name, _ in BLOCK.findall(GUIDE.read_text())]
    for package in PACKAGES:
        module = package.replace("-", "_")
        assert f"{package}/pyproject.toml" in names and f"{package}/{module}.py" in names
        assert any(name.startswith(f"{package}/tests/") for name in names)
    guide = GUIDE.read_text()
    for kind in ("register_losses", "register_backbones", "register_optimizers", "register_schedulers",
                 "register_flow_providers"):
        assert f"def {kind}(register)" in guide


@pytest.mark.slow  # ~12 s: a second pytest with torch; the default run still runs the guide's recipe with them
def test_guide_plugins_pass_their_own_tests(guide_packages):
    root, site = guide_packages
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *(str(root / package / "tests") for package in PACKAGES)],
                            capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(site)}, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "19 passed" in result.stdout


def test_guide_recipe_runs_with_real_weights(guide_packages, monkeypatch):
    root, site = guide_packages
    monkeypatch.syspath_prepend(str(site))
    folder = root / "stylekit-edges"
    write_images(folder)
    status, _, err = run_cli("run", str(folder / "edges.toml"), registry=load_registry())
    assert status == 0, err
    assert (folder / "edges.png").exists()
    registry = load_registry()
    assert not registry.broken  # every class of the guide keeps the contract that registration checks
    status, out, _ = run_cli("plugins", registry=registry)
    for package in PACKAGES:
        assert f"{package} 0.1.0" in out
    assert "power: float > 0 (default 1.0) - exponent on the edge magnitude" in out
    assert "momentum: float >= 0, < 1 (default 0.9) - decay of the gradient's running average" in out


def test_generated_references_are_current():
    assert docgen.main(["--check"]) == 0, "run: python -m stylekit.tools.docgen"


def test_every_hook_is_documented_and_tested():
    reference = (ROOT / "docs" / "hooks.md").read_text()
    tests = "".join(p.read_text() for p in [*ROOT.glob("tests/*.py"), *ROOT.glob("plugins/*/tests/*.py")])
    guide = GUIDE.read_text()
    for hook in hookspecs.HOOK_KINDS:
        assert f"## `{hook}(" in reference
        assert getattr(hookspecs, hook).__doc__.strip()
        assert f"def {hook}(" in tests + guide, f"no test implements {hook}"


def test_every_contract_member_is_documented():
    """The component reference documents every member a plugin may implement or call."""
    import stylekit.contract as components

    for class_name in docgen.CONTRACT_CLASSES:
        cls = getattr(components, class_name)
        assert (cls.__doc__ or "").strip(), f"{class_name} has no docstring"
        for heading, doc in docgen.contract_members(cls):
            assert doc.strip(), f"{class_name}: {heading} is undocumented"
    reference = (ROOT / "docs" / "components.md").read_text()
    assert "### classmethod `layer_names_for(cls, params: BaseModel) -> tuple[str, ...]`" in reference
    assert "`needs_closure: bool = False`" in reference and "`style_masks`" in reference
