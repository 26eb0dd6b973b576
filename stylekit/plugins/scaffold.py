"""`stylekit new-plugin NAME --kind KIND [--kind KIND...]`: write a plugin package that
installs and passes its own tests unchanged: pyproject.toml with the entry point, the
module, a README and tests. The templates are package data (`stylekit/plugins/templates/`),
one folder per kind plus the files every kind shares.

One kind: one module, `stylekit_NAME.py`. Several kinds: one package, `stylekit_NAME/`, with a
module per kind (`loss.py`, `scheduler.py`) and an `__init__.py` that imports their hooks
for the one entry point. A module per kind, rather than one module with all of them: each
kind's module and test are exactly what the one-kind scaffold writes (the same templates,
tested the same way), the kinds' names (a backbone's LAYERS, an optimizer's helper class)
cannot collide, and a kind is dropped by deleting its module and its line in __init__.py.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from string import Template

from stylekit.contract.hookspecs import HOOK_KINDS
from stylekit.errors import UserError, did_you_mean, one_line

SCAFFOLD_KINDS = ("loss", "backbone", "optimizer", "scheduler", "flow")  # what `--kind` takes
NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# How a recipe chooses a component of each kind, for the README.
RECIPE_EXAMPLES = {
    "loss": '[[loss]]\nname = "$name"\nweight = 1e3\nlayers = ["relu4_2"]',
    "backbone": '[backbone]\nname = "$name"',
    "optimizer": '[optimizer]\nname = "$name"',
    "scheduler": '[scheduler]\nname = "$name"',
    "flow": '[flow]\nname = "$name"',
}


def names_for(name: str) -> dict[str, str]:
    """'laplacian' (or 'stylekit-laplacian') -> the component, package, module and class names."""
    name = name.strip().lower().removeprefix("stylekit-").removeprefix("stylekit_").replace("-", "_")
    if not NAME.match(name):
        raise UserError(f"plugin name '{name}': use lower-case letters, digits and underscores, starting with a letter "
                        "(e.g. laplacian)")
    return {"name": name, "package": f"stylekit-{name.replace('_', '-')}", "module": f"stylekit_{name}",
            "cls": "".join(part.capitalize() for part in name.split("_"))}


#: The hook that registers each kind (register_losses for a loss...).
HOOKS = {kind: hook for hook, kind in HOOK_KINDS.items()}
#: What each kind needs besides stylekit, for pyproject's dependencies.
DEPENDENCIES = {"backbone": ["torchvision>=0.19"]}


def kinds_from(given: list[str] | str) -> list[str]:
    """`--kind` values (repeated, or comma lists: `loss,scheduler`) -> the kinds, in the
    order given, each once."""
    kinds = []
    for value in [given] if isinstance(given, str) else given:
        for kind in (part.strip() for part in value.split(",")):
            if kind not in SCAFFOLD_KINDS:
                raise UserError(f"--kind: unknown kind '{kind}'{did_you_mean(kind, SCAFFOLD_KINDS)} - choose from "
                                f"{', '.join(SCAFFOLD_KINDS)} (several: --kind loss,scheduler)")
            if kind not in kinds:
                kinds.append(kind)
    return kinds


def render(kinds: list[str] | str, name: str) -> dict[str, str]:
    """Relative path -> text of every file of the package with the components of `kinds`."""
    kinds = kinds_from(kinds)
    names = names_for(name)
    templates = files("stylekit.plugins") / "templates"
    several = len(kinds) > 1

    def text(template: str, values: dict[str, str]) -> str:
        return Template((templates / template).read_text(encoding="utf-8")).substitute(values)

    out, hooks = {}, []
    for kind in kinds:
        # Several kinds in one package: a module each, and class names that say their kind.
        values = {**names, "kind": kind}
        if several:
            values.update(module=f"{names['module']}.{kind}", cls=names["cls"] + kind.capitalize())
        module_path = f"{names['module']}/{kind}.py" if several else f"{names['module']}.py"
        out[module_path] = text(f"{kind}/module.py.tmpl", values)
        out[f"tests/test_{names['name']}{'_' + kind if several else ''}.py"] = text(f"{kind}/test.py.tmpl", values)
        hooks.append((values["module"], values["cls"], HOOKS[kind]))
    described = " and ".join([", ".join(kinds[:-1]), kinds[-1]] if several else kinds)
    shared = {**names, "kinds": described,
              "recipe_example": "\n\n".join(Template(RECIPE_EXAMPLES[kind]).substitute(names) for kind in kinds),
              "dependencies": ", ".join(f'"{d}"' for d in ["stylekit>=0.1", *(d for k in kinds for d in DEPENDENCIES.get(k, []))]),
              "layout": f'packages = ["{names["module"]}"]' if several else f'py-modules = ["{names["module"]}"]',
              "where": (f"`{names['module']}/` holds a module per kind ({', '.join(f'`{k}.py`' for k in kinds)}), and "
                        "`__init__.py` imports their hooks" if several else f"`{names['module']}.py` holds the component")}
    if several:
        imports = "\n".join(f"from {module} import {cls}, {hook}" for module, cls, hook in hooks)
        exports = ", ".join(f'"{name}"' for _, cls, hook in hooks for name in (cls, hook))
        out[f"{names['module']}/__init__.py"] = text("package_init.py.tmpl", {**shared, "imports": imports, "exports": exports})
    out["pyproject.toml"] = text("pyproject.toml.tmpl", shared)
    out["README.md"] = text("README.md.tmpl", shared)
    return out


def new_plugin(name: str, kinds: list[str] | str, parent: Path) -> Path:
    """Write the package into `parent`/stylekit-NAME; never over an existing folder."""
    files_ = render(kinds, name)
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
