"""The `stylekit` command: its six subcommands (run, batch, validate, plugins, schema,
new-plugin) parsed here, each done by its own module. A command's heavy imports (torch, the
plugins) happen when it runs, so that `stylekit --help` and a mistyped flag answer at once."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import traceback
from pathlib import Path

from stylekit import __version__
from stylekit.errors import RunFailed, UserError, one_line, tracebacks_wanted
from stylekit.commands.arguments import (DEFAULT_RECIPE, add_live_args, add_sets, add_size_args, add_steps_arg, add_strength_arg,
                                         default_recipe, flag_overrides, recipe_paths, unknown_arguments)
from stylekit.commands import video
from stylekit.plugins.scaffold import SCAFFOLD_KINDS, cmd_new_plugin
from stylekit.recipe.overrides import Overrides, shell_word


def main(argv: list[str] | None = None, registry=None) -> int:
    """Entry point; `registry` replaces the installed plugins (tests pass a tiny backbone)."""
    parser = make_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # an unknown option: said by the subcommand, with the option meant or --set
        parser.subcommands[args.command].error(unknown_arguments(parser.subcommands[args.command], extras))
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    args.registry = registry
    try:
        return args.handler(args)
    except UserError as exc:
        print_problems(exc, args)
        return 2
    except RunFailed as exc:  # a PluginError among them: its traceback as a UserError's is shown
        details = getattr(getattr(exc, "problem", None), "details", None)
        if details and (getattr(args, "traceback", False) or tracebacks_wanted()):
            print(details, file=sys.stderr)
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_status
    except BrokenPipeError:  # `stylekit plugins | head`: the reader left; not an error (an OSError too)
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as exc:  # a file or folder named on the command line that cannot be written or read
        if exc.filename is None:  # no path to name (a full disk mid-run, a socket): not the user's input
            raise
        from stylekit.files.outputs import describe  # deferred: see the docstring

        if getattr(args, "traceback", False) or tracebacks_wanted():
            traceback.print_exc()
        print(f"error: {one_line(describe(exc))} - check the path and its permissions, or choose another", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the run began
        print("interrupted - nothing was written", file=sys.stderr)
        return 130


def print_problems(exc: UserError, args) -> None:
    for problem in exc.problems:
        if problem.details and (getattr(args, "traceback", False) or tracebacks_wanted()):
            print(problem.details, file=sys.stderr)
        print(f"error: {problem}", file=sys.stderr)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylekit", description="Neural style transfer from TOML recipes.")
    parser.add_argument("--version", action="version", version=f"stylekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a recipe and write the stylized image")
    add_recipe_args(run, optional=True)
    run.add_argument("--dry-run", action="store_true",
                     help="check the recipe and print the estimated peak memory of each stage, without running")
    run.add_argument("--resume", action="store_true",
                     help="continue from the checkpoint an interrupted run kept beside its output (<name>.checkpoint.pt)")
    run.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    add_live_args(run)
    run.set_defaults(handler=cmd_run)

    video.add_parsers(sub)

    batch = sub.add_parser("batch", help="run a recipe over many content and style images (torchrun for several workers)")
    batch.add_argument("recipe", help="a TOML recipe, e.g. recipes/fast.toml")
    batch.add_argument("--content", action="append", default=[], metavar="FOLDER|GLOB|FILE",
                       help="content images: a folder, a glob pattern or a file (repeat for several)")
    batch.add_argument("--style", action="append", default=[], metavar="FOLDER|GLOB|FILE",
                       help="style images (default: the recipe's); every content image is paired with every style")
    batch.add_argument("--pairs", metavar="MANIFEST", help="a CSV (content,style columns) or JSONL file of pairs instead")
    batch.add_argument("--out", "-o", required=True, help="output folder: <content>.<style>.png, records, summary.jsonl")
    batch.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any recipe field")
    add_steps_arg(batch)
    add_size_args(batch)
    add_strength_arg(batch)
    batch.add_argument("--batch-size", default="1", metavar="N|auto",
                       help="images of one size optimized together in each step (auto: from the memory estimate)")
    batch.add_argument("--dry-run", action="store_true", help="list what would be done, and the batch size, without running")
    add_live_args(batch)
    batch.set_defaults(handler=cmd_batch)

    validate = sub.add_parser("validate", help="check recipes without running them (several, or glob patterns, at once)")
    add_recipe_args(validate, several=True)
    validate.set_defaults(handler=cmd_validate)

    schema = sub.add_parser("schema", help="print a JSON Schema of recipes (with every installed plugin's params), for editors")
    schema.add_argument("--output", "-o", metavar="PATH", help="write it to PATH instead (e.g. recipes/recipe.schema.json)")
    schema.add_argument("--taplo", metavar="DIR", help="write it to DIR/recipe.schema.json with a DIR/.taplo.toml, so "
                        "that editors built on taplo check the recipes in DIR wherever it is")
    schema.set_defaults(handler=cmd_schema)

    plugins = sub.add_parser("plugins", help="list loaded plugins and their components")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of text")
    plugins.set_defaults(handler=cmd_plugins)

    new_plugin = sub.add_parser("new-plugin", help="write a plugin package (module, tests, pyproject) to start from")
    new_plugin.add_argument("name", help="the component's name, e.g. laplacian (package stylekit-laplacian)")
    new_plugin.add_argument("--kind", required=True, action="append", metavar="|".join(SCAFFOLD_KINDS), help="what the plugin adds; several: repeat it or list them (loss,scheduler)")
    new_plugin.add_argument("--dir", default=".", help="where to create the package's folder (default: here)")
    new_plugin.set_defaults(handler=cmd_new_plugin)
    parser.subcommands = sub.choices
    return parser


def add_recipe_args(parser: argparse.ArgumentParser, several: bool = False, optional: bool = False) -> None:
    if several:
        parser.add_argument("recipe", nargs="+", metavar="RECIPE",
                            help="TOML recipes or glob patterns, e.g. recipes/*.toml; each is reported")
    elif optional:
        parser.add_argument("recipe", nargs="?", help=f"a TOML recipe (default: {DEFAULT_RECIPE}, as ./stylize uses)")
    else:
        parser.add_argument("recipe", help="a TOML recipe, e.g. recipes/gatys.toml")
    parser.add_argument("--content", help="content image (overrides images.content)")
    parser.add_argument("--style", action="append", help="style image (overrides images.style; repeat for several)")
    parser.add_argument("--output", "-o", help="output image (overrides output.path)")
    add_steps_arg(parser)
    add_size_args(parser)
    add_strength_arg(parser)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any recipe field, e.g. --set optimizer.params.lr=0.5 (values are TOML)")
    parser.add_argument("--traceback", action="store_true",
                        help="with an error raised by a plugin's code, also print its traceback (or set STYLEKIT_TRACEBACK=1)")


def overrides_from(args) -> tuple[Overrides, list]:
    overrides = Overrides()
    q = shell_word  # flags are quoted in messages as they would be typed
    # Paths given on the command line are relative to the current directory, not the recipe.
    if args.content is not None:
        overrides.add(("images", "content"), str(Path(args.content).resolve()), f"--content {q(args.content)}")
    if args.style:
        overrides.add(("images", "style"), [str(Path(p).resolve()) for p in args.style],
                      " ".join(f"--style {q(p)}" for p in args.style))
    if args.output is not None:
        overrides.add(("output", "path"), str(Path(args.output).resolve()), f"--output {q(args.output)}")
    return overrides, add_sets(flag_overrides(overrides, args), args.set)


def load(args, recipe=None, registry=None, overrides=None):
    """The recipe (`args.recipe` unless given) loaded with the command line's overrides; a
    UserError with the malformed --set flags' problems and the recipe's together. Given
    `overrides` (validate's, for many recipes), their malformed flags are the caller's to say."""
    from stylekit.plugins.registry import broken_warnings, load_registry  # deferred: see the docstring
    from stylekit.recipe.load import load_recipe  # deferred: see the docstring

    quiet_registry = registry is not None  # given: its warnings were printed when it was loaded
    registry = registry or args.registry or load_registry()
    recipe = args.recipe if recipe is None else recipe
    overrides, malformed = overrides_from(args) if overrides is None else (overrides, [])
    try:
        loaded = load_recipe(recipe, registry, overrides, beside=True)  # what run writes, validate checks
    except UserError as exc:
        raise UserError(malformed + exc.problems) from None
    if malformed:
        raise UserError(malformed)
    if not quiet_registry:
        for warning in broken_warnings(registry):
            print(warning, file=sys.stderr)
    return loaded, registry


def cmd_run(args) -> int:
    from stylekit.commands.run import dry_run, run_plan  # deferred: see the docstring

    if args.recipe is None:
        args.recipe, which = default_recipe(args)
        if not args.quiet:
            print(which, file=sys.stderr)
    plan, _ = load(args)
    if args.dry_run:
        dry_run(plan)
        return 0
    from stylekit.commands.progress import ProgressDisplay  # deferred: see the docstring

    display = ProgressDisplay(sys.stderr, every=plan.recipe.run.progress_every, quiet=args.quiet)
    if not args.live:
        return run_plan(plan, resume=args.resume, stream=display, command=args.argv)
    from stylekit.commands.live import watch  # deferred: see the docstring

    with watch(Path(str(plan.source)).name, args.live_host, args.live_port, plan) as live:
        return run_plan(plan, resume=args.resume, stream=display, callbacks=[live], command=args.argv)


def cmd_batch(args) -> int:
    from stylekit.commands.batch import run_batch  # deferred: see the docstring
    from stylekit.plugins.registry import load_registry  # deferred: see the docstring

    if not args.content and not args.pairs:
        raise UserError("stylekit batch: give --content (a folder, glob or file) or --pairs MANIFEST")
    if args.pairs and (args.content or args.style):
        raise UserError(f"stylekit batch: --pairs {args.pairs} gives the content and style of every item - "
                        "leave out --content and --style, or leave out --pairs")
    overrides = flag_overrides(Overrides(), args)
    malformed = add_sets(overrides, args.set)
    if malformed:  # all at once; the recipe's own problems are the batch's to report
        raise UserError(malformed)
    run = functools.partial(run_batch, args.recipe, args.content, args.style, args.pairs, Path(args.out), overrides,
                            args.registry or load_registry(), args.batch_size, args.dry_run)
    if not args.live or args.dry_run:
        return run()
    from stylekit.commands.live import serve  # deferred: see the docstring

    port = args.live_port + int(os.environ.get("LOCAL_RANK", 0)) if args.live_port else 0  # one page per worker
    with serve(args.live_host, port) as live:
        return run(live=live)


def cmd_validate(args) -> int:
    """Each recipe checked and reported (ok, or all its errors) - one bad recipe does not stop
    the others being checked; exit 2 if any failed."""
    from stylekit.plugins.registry import broken_warnings, load_registry  # deferred: see the docstring

    recipes = recipe_paths(args.recipe)
    registry = args.registry or load_registry()
    for warning in broken_warnings(registry):  # once, not once per recipe
        print(warning, file=sys.stderr)
    overrides, malformed = overrides_from(args)
    if malformed:  # said once, not once per recipe; the recipes are still checked with the rest
        print_problems(UserError(malformed), args)
    failed = bool(malformed)
    for recipe in recipes:
        try:
            loaded, _ = load(args, recipe, registry, overrides)
        except UserError as exc:
            failed = True
            print_problems(exc, args)
            continue
        print(f"{one_line(str(loaded.path))}: ok")
    return 2 if failed else 0


def cmd_schema(args) -> int:
    from stylekit.files.images import write_text_atomic  # deferred: see the docstring
    from stylekit.tools.editors import replace_problems, write_for_editors  # deferred: see the docstring
    from stylekit.tools.json_schema import render  # deferred: see the docstring
    from stylekit.plugins.registry import load_registry  # deferred: see the docstring

    if args.output and args.taplo:
        raise UserError("stylekit schema: --taplo DIR writes the schema to DIR/recipe.schema.json - leave out --output")
    text = render(args.registry or load_registry())
    if args.taplo:
        for path in write_for_editors(Path(args.taplo), text, f"--taplo {shell_word(args.taplo)}"):
            print(f"wrote {one_line(str(path))}", file=sys.stderr)
    elif args.output:
        problems = replace_problems([Path(args.output)], f"--output {shell_word(args.output)}")
        if problems:  # a file of the user's that happens to be named as the schema is to be
            raise UserError(problems)
        write_text_atomic(text, Path(args.output))
        print(f"wrote {one_line(args.output)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_plugins(args) -> int:
    from stylekit.plugins.registry import load_registry, unmatched_lines  # deferred: see the docstring
    from stylekit.plugins.listing import listing, render_text  # deferred: see the docstring

    registry = args.registry or load_registry()
    table = listing(registry)
    for line in unmatched_lines(registry):  # on stderr, so that --json stays JSON
        print(f"warning: {line}", file=sys.stderr)
    print(json.dumps(table, indent=1) if args.json else render_text(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
