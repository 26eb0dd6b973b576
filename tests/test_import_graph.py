"""The package's shape holds: no import cycles among stylekit's modules, nothing imported
from a higher layer into a lower one (the layers of docs/architecture.md), and the public
modules take nothing from the command line's folder. Imports inside functions count: a
cycle hidden in a function is still a cycle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "stylekit"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

#: Lowest first; a module may import from its own layer and the ones before it.
LAYERS = [
    ("foundation", ["stylekit", "stylekit._lazy", "stylekit.errors"]),
    ("contract", ["stylekit.contract", "stylekit.components", "stylekit.sequential", "stylekit.hookspecs"]),
    ("files, built-ins", ["stylekit.files", "stylekit.builtins"]),
    ("plugins", ["stylekit.plugins"]),
    ("recipe", ["stylekit.recipe"]),
    ("run", ["stylekit.run"]),
    ("video", ["stylekit.video"]),
    ("public face, tools", ["stylekit.api", "stylekit.tools"]),
    # Test support drives the command line in process, as pytest's pytester does.
    ("commands, test support", ["stylekit.commands", "stylekit.__main__", "stylekit.testing", "stylekit.component_checks",
                                "stylekit.pytest_plugin"]),
]
PUBLIC = ["stylekit", "stylekit.api", "stylekit.contract", "stylekit.errors", "stylekit.testing"]
#: What a public module may take from commands/: the `stylekit` command itself (its `main`,
#: the console script), which `stylekit.testing.run_cli` runs in process.
COMMAND_ENTRY = "stylekit.commands.cli"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, known: set[str], typing_only: bool = True) -> set[str]:
    """Every stylekit module `path` imports, at the top or inside a function; with
    `typing_only` False, not those under `if TYPE_CHECKING:` (names for annotations, which
    are never imported at run time and so cannot close a cycle)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    if not typing_only:
        for block in ast.walk(tree):
            if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING":
                skipped.update(id(node) for node in ast.walk(block))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("stylekit"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
    return found & known


def graph(typing_only: bool = True) -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, set(known), typing_only) - {name} for name, path in known.items()}


def layer_of(module: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + ".") and prefix != "stylekit":
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return best[0]


def test_there_are_no_relative_imports():
    """Absolute imports only: the graph below reads them, and a module's imports say where
    each name lives."""
    relative = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}" for path in PACKAGE.rglob("*.py")
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.ImportFrom) and node.level]
    assert relative == []


def test_no_module_imports_from_a_higher_layer():
    upward = sorted(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                    for module, targets in graph().items() for target in targets if layer_of(target) > layer_of(module))
    assert upward == []


def test_there_are_no_import_cycles():
    edges = graph(typing_only=False)
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_public_modules_take_nothing_private_from_the_commands():
    """The API, the contract and the errors reach nothing in commands/, even through other
    modules; the testing helpers only the command's entry point."""
    edges = graph()

    def reach(module: str, seen: set[str]) -> set[str]:
        for target in edges[module] - seen - {COMMAND_ENTRY}:
            seen.add(target)
            reach(target, seen)
        return seen

    leaks = {module: sorted(m for m in reach(module, set()) if m.startswith("stylekit.commands"))
             for module in PUBLIC}
    assert {module: found for module, found in leaks.items() if found} == {}
    assert {m for m in PUBLIC if COMMAND_ENTRY in edges[m]} == {"stylekit.testing"}



def test_the_layers_are_those_docs_architecture_md_shows():
    """The layer table of docs/architecture.md lists these layers in this order, each row
    naming the folders and modules of its layer."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith("| layer")]
    assert [row[0] for row in rows] == [name for name, _ in LAYERS]
    for (name, prefixes), row in zip(LAYERS, rows):
        for prefix in prefixes:
            part = prefix.removeprefix("stylekit").removeprefix(".") or "__init__"
            shown = f"`{part}/`" if (PACKAGE / part).is_dir() else f"`{part.split('.')[-1]}.py`"
            if part not in ("components", "sequential", "hookspecs"):  # the old paths, named in the text
                assert shown in row[1] or shown.replace("`", "`stylekit/", 1) in row[1], (name, shown)


def test_every_module_is_small():
    """A module over ~350 lines does more than one job; split it by job."""
    large = {name: n for name, path in modules().items()
             if (n := len(path.read_text(encoding="utf-8").splitlines())) > 350}
    assert large == {}


def test_imports_inside_functions_say_why():
    """Imports belong at the top of a module; one inside a function avoids a cost on purpose
    (torch for a hookimpl-only plugin, the commands' heavy imports for `stylekit --help`),
    and a comment on its line or the line above says which."""
    silent = []
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        here, above = lines[node.lineno - 1], lines[node.lineno - 2].strip()
                        if "#" not in here and not above.startswith("#"):
                            silent.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {here.strip()}")
    assert silent == []
