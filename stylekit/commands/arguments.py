"""What the command line's arguments mean beyond argparse's own parsing: the short forms of
recipe fields (--width, --height), the recipes a validate names (glob patterns expanded),
the recipe `stylekit run` uses when none is named, what to say of an unknown option, and the
overrides that --strength, --steps, --width, --height and --set make; the options that
several commands share (--live..., --strength, --steps, --width, --height)."""

from __future__ import annotations

import argparse
import difflib
import glob
import os
from importlib import resources
from pathlib import Path

from stylekit.errors import UserError, one_line
from stylekit.recipe.overrides import EXAMPLE, parse_override, shell_word, with_cwd_paths


def add_size_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, metavar="PX", help="overrides output.width (as --set output.width=PX)")
    parser.add_argument("--height", type=int, metavar="PX", help="overrides output.height (as --set output.height=PX)")


#: The recipe `stylekit run` uses when none is named, as ./stylize does: the checkout's own,
#: found from this package's folder (an editable install or a run from the checkout).
DEFAULT_RECIPE = "recipes/gatys.toml"
#: Its copy in the package, for an installation without the checkout (from a wheel): a
#: byte-for-byte copy (tests/test_cli.py keeps them equal; recipes/gatys.toml is the one to edit).
PACKAGED_RECIPE = "default_recipe.toml"
#: Where the packaged copy writes unless told otherwise: where ./stylize writes in a
#: checkout (the recipe's ../out/gatys.png), but under the current folder.
PACKAGED_OUTPUT = "out/gatys.png"


def add_live_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--live", action="store_true",
                        help="serve a page that shows the images as they form, with a Stop button (see --live-host/--live-port)")
    parser.add_argument("--live-host", default="127.0.0.1", metavar="HOST",
                        help="address of the live page (default 127.0.0.1; off loopback - not 127.0.0.1, ::1 or localhost - the page needs the printed token)")
    parser.add_argument("--live-port", type=int, default=8750, metavar="PORT",
                        help="port of the live page (0: any free one; under torchrun, worker N serves PORT+N)")


def add_strength_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strength", type=float, metavar="X", help="how much style (overrides strength): 2 doubles the "
                        "style terms' weights, 0.5 halves them; more style costs the photo's structure (and, above "
                        "a recipe's more_steps_above, takes more steps: the default's 70 are 140 at 8)")


def add_steps_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, help="overrides run.steps (a staged recipe shares them out over its stages)")


def default_recipe(args: argparse.Namespace) -> tuple[str, str]:
    """The recipe for a `stylekit run` whose `args` name none, and the line that says which.
    From a checkout, its recipes/gatys.toml; else the package's copy, whose example images
    and output (paths relative to the checkout's recipes/) are not there: it needs --content
    and --style, and writes PACKAGED_OUTPUT under the current folder unless -o or --set
    output.path says where (set in `args`)."""
    checkout = Path(__file__).resolve().parents[2] / DEFAULT_RECIPE
    if checkout.is_file():
        return str(checkout), f"using the default recipe {checkout} (name a recipe to use another)"
    packaged = Path(str(resources.files("stylekit.commands").joinpath(PACKAGED_RECIPE)))
    if not packaged.is_file():
        raise UserError(f"stylekit run: no recipe given, and the default one ({DEFAULT_RECIPE}) is not in this "
                        f"installation of stylekit ({checkout.parent.parent}) - name a recipe, e.g. stylekit run my.toml")
    missing = [flag for flag, given in (("--content", args.content), ("--style", args.style)) if not given]
    if missing:
        raise UserError(f"stylekit run: no recipe given, and the default recipe's example images come only with a "
                        f"checkout of stylekit - give {' and '.join(missing)}, or name a recipe")
    if args.output is None and not any(_sets_output_path(text) for text in args.set):
        args.output = PACKAGED_OUTPUT
    where = f", writing {args.output}" if args.output == PACKAGED_OUTPUT else ""
    return str(packaged), (f"using the default recipe {packaged} (a copy of stylekit's {DEFAULT_RECIPE}{where}; "
                           "name a recipe to use another)")


def _sets_output_path(text: str) -> bool:
    try:
        key, _ = parse_override(text)
    except UserError:  # reported with the recipe's problems
        return False
    return key[:2] in (("output", "path"), ("output",))


def recipe_paths(patterns: list[str]) -> list[str]:
    """The recipes named: each pattern with glob characters expanded (sorted, so that the
    report's order does not depend on the file system); a plain name kept as given, so that
    a missing one is reported by the load as any missing recipe is. A recipe named twice (by
    name and by a pattern, or as ./a.toml and a.toml) is checked once, where it first comes.
    A pattern that matches nothing is a UserError naming it."""
    paths: list[str] = []
    for pattern in patterns:
        if not glob.has_magic(pattern):
            paths.append(pattern)
            continue
        found = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not found:
            raise UserError(f"{one_line(pattern)}: no file matches this pattern - check it, or quote it so that "
                            "the shell does not expand it first")
        paths.extend(found)
    once = {}
    for path in paths:  # the same file, however it was written: its resolved path (symbolic links followed)
        once.setdefault(Path(path).expanduser().resolve(), path)
    return list(once.values())


def unknown_arguments(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """What to say of arguments `parser` does not know: an option close to one it takes is
    named; any other option is pointed to --set, which reaches every recipe field."""
    options = {option[2:]: option for action in parser._actions for option in action.option_strings
               if option.startswith("--")}
    unknown = [extra for extra in extras if extra.startswith("-") and extra != "-"]
    if not unknown:
        return f"unexpected argument {shell_word(extras[0])} - remove it, or see {parser.prog} --help"
    given = unknown[0].split("=", 1)[0]
    # Compared without the leading dashes, which every option shares and would make '--lr'
    # look like '--live'; 0.7 still takes one swapped or missing letter in a word of four or more.
    close = difflib.get_close_matches(given.lstrip("-"), list(options), n=1, cutoff=0.7)
    if close:
        return f"unknown option {shell_word(given)} - did you mean {options[close[0]]}?"
    if "set" in options:
        return f"unknown option {shell_word(given)} - to change a recipe field, use --set KEY=VALUE, {EXAMPLE}"
    return f"unknown option {shell_word(given)} - see {parser.prog} --help"


def flag_overrides(overrides, args):
    """--strength, --steps, --width and --height, which run, validate and batch all take."""
    if args.strength is not None:
        overrides.add(("strength",), args.strength, f"--strength {args.strength:g}")
    if args.steps is not None:
        overrides.add(("run", "steps"), args.steps, f"--steps {args.steps}")
    for side in ("width", "height"):
        if getattr(args, side) is not None:
            overrides.add(("output", side), getattr(args, side), f"--{side} {getattr(args, side)}")
    return overrides


def add_sets(overrides, texts: list[str]) -> list:
    """`--set KEY=VALUE` flags into `overrides`, each remembered for messages; path fields
    relative to the current folder. Returns the problems of the malformed ones, all of them,
    for the caller to report with the recipe's (one bad --set does not hide the rest)."""
    problems = []
    for text in texts:
        try:
            key, value = parse_override(text)
        except UserError as exc:
            problems += exc.problems
            continue
        overrides.add(key, with_cwd_paths(key, value), f"--set {shell_word(text)}")
    return problems
