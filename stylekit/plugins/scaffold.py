"""`stylekit new-plugin NAME --kind KIND`: write a plugin package that installs and passes
its own tests unchanged: pyproject.toml with the entry point, the module, a README and
tests. The templates are package data (`stylekit/plugins/templates/`), one folder per kind
plus the files every kind shares."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from string import Template

from stylekit.errors import UserError, one_line

KINDS = ("loss", "backbone", "optimizer", "scheduler")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# How a recipe chooses a component of each kind, for the README.
RECIPE_EXAMPLES = {
    "loss": '[[loss]]\nname = "$name"\nweight = 1e3\nlayers = ["relu4_2"]',
    "backbone": '[backbone]\nname = "$name"',
    "optimizer": '[optimizer]\nname = "$name"',
    "scheduler": '[scheduler]\nname = "$name"',
}


def names_for(name: str) -> dict[str, str]:
    """'laplacian' (or 'stylekit-laplacian') -> the component, package, module and class names."""
    name = name.strip().lower().removeprefix("stylekit-").removeprefix("stylekit_").replace("-", "_")
    if not NAME.match(name):
        raise UserError(f"plugin name '{name}': use lower-case letters, digits and underscores, starting with a letter "
                        "(e.g. laplacian)")
    return {"name": name, "package": f"stylekit-{name.replace('_', '-')}", "module": f"stylekit_{name}",
            "cls": "".join(part.capitalize() for part in name.split("_"))}


def render(kind: str, name: str) -> dict[str, str]:
    """Relative path -> text of every file of the package."""
    values = {**names_for(name), "kind": kind}
    values["recipe_example"] = Template(RECIPE_EXAMPLES[kind]).substitute(values)
    templates = files("stylekit.plugins") / "templates"
    sources = {
        "pyproject.toml": templates / "pyproject.toml.tmpl",
        "README.md": templates / "README.md.tmpl",
        f"{values['module']}.py": templates / kind / "module.py.tmpl",
        f"tests/test_{values['name']}.py": templates / kind / "test.py.tmpl",
    }
    return {path: Template(source.read_text(encoding="utf-8")).substitute(values) for path, source in sources.items()}


def new_plugin(name: str, kind: str, parent: Path) -> Path:
    """Write the package into `parent`/stylekit-NAME; never over an existing folder."""
    if kind not in KINDS:
        raise UserError(f"unknown kind '{kind}' - choose one of: {', '.join(KINDS)}")
    files_ = render(kind, name)
    folder = parent / names_for(name)["package"]
    if folder.exists():
        raise UserError(f"{folder} already exists - choose another name or move it away; nothing was written")
    for relative, text in files_.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def cmd_new_plugin(args) -> int:
    folder = new_plugin(args.name, args.kind, Path(args.dir))
    print(one_line(f"wrote {folder}: pip install -e '{folder}[test]', then pytest {folder}"))  # escaped: one line
    return 0
