"""The long fuzz run of the recipe loader, the --set parser, the live page's server, batch
manifests and checkpoints, and of values that used to end in a traceback (deep nesting, huge
numbers, booleans for counts)
(the properties of tests/fuzzing.py, which the suite runs for a few seconds).

    .venv/bin/python benchmarks/fuzz.py --examples 4000 --record
    .venv/bin/python benchmarks/fuzz.py --examples 4000 --only live --record   # the live server's two

runs each property (or those whose name holds --only's text) for that many examples with
fresh random seeds, prints what it finds, and with --record writes the figures into
tests/corpus/fuzz_figures.json (replacing the rows of the properties it ran), from which
docs/reliability.md is generated (`python tests/corpus/corpus.py --docs`).
The manifest property also runs, for real, the manifests that list two items or fewer.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import fuzzing  # noqa: E402

FIGURES = ROOT / "tests" / "corpus" / "fuzz_figures.json"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = next((l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), "")
                simd = [f for f in ("avx2", "avx512f", "amx_bf16") if f in flags.split()]
                import os
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores, {', '.join(simd) or 'no AVX2'})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def properties(space):
    def mutated(mutated):
        name, text = mutated
        path = space["folder"] / "recipes" / f"mutated-{name}"
        path.write_text(text, encoding="utf-8")
        fuzzing.validate(space, path)

    def documents(doc):
        path = space["folder"] / "random.toml"
        path.write_text(fuzzing.toml_document(doc), encoding="utf-8")
        fuzzing.validate(space, path)

    def set_arguments(argument):
        fuzzing.validate(space, space["tiny"], "--set", argument)

    def live_request(request):
        fuzzing.live_request(space["live"](), request)

    return [("mutations of the shipped recipes", given(mutated=fuzzing.mutated_recipe())(mutated)),
            ("random TOML documents", given(doc=fuzzing.documents)(documents)),
            ("random --set arguments", given(argument=fuzzing.set_arguments)(set_arguments)),
            ("live server: the page's requests, any values", given(request=fuzzing.page_requests())(live_request)),
            ("live server: any request", given(request=fuzzing.live_requests())(live_request)),
            *output_properties(space), *hostile_value_properties(space)]


def output_properties(space):
    """Batch manifests (with a real run where one lists two items or fewer) and mutated
    checkpoints resumed from."""
    from hypothesis import strategies as st

    def manifests(manifest):
        fuzzing.batch_manifest(space, manifest, run=True)

    def checkpoints(optimizer, changes):
        fuzzing.resumed_checkpoint(space, optimizer, changes)

    return [("random batch manifests (CSV, JSONL)", given(manifest=fuzzing.manifests())(manifests)),
            ("mutated checkpoints resumed from", given(optimizer=st.sampled_from(sorted(fuzzing.CHECKPOINT_OPTIMIZERS)),
                                                      changes=fuzzing.mutations)(checkpoints))]


def hostile_value_properties(space):
    """Deep nesting, huge numbers and booleans for counts (tests/fuzzing.py)."""
    def deep(text):
        path = space["tiny"].parent / "deep.toml"
        path.write_text(text, encoding="utf-8")
        fuzzing.validate(space, path)

    def huge(args):
        status, _ = fuzzing.validate(space, space["tiny"], *args)
        if status == 0:
            fuzzing.run_briefly(space, *args)

    def booleans(args):
        status, err = fuzzing.validate(space, space["tiny"], *args)
        assert status == 2, err

    return [("deeply nested recipes", given(text=fuzzing.deep_recipe())(deep)),
            ("huge numbers, validated and run", given(args=fuzzing.huge_number_sets)(huge)),
            ("booleans where numbers belong", given(args=fuzzing.boolean_number_sets)(booleans))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=4000, help="examples per property")
    parser.add_argument("--only", default="", metavar="TEXT", help="run only the properties whose name holds TEXT")
    parser.add_argument("--record", action="store_true", help=f"write the figures to {FIGURES.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    rows, failed = [], 0
    servers = []

    def live():  # one live server for the run, started when a property first needs it
        if not servers:
            servers.append(fuzzing.live_server())
        return servers[0]

    with tempfile.TemporaryDirectory() as tmp:
        space = fuzzing.workspace(Path(tmp))
        space["live"] = live
        everything = properties(space)
        order = [name for name, _ in everything]
        chosen = [(name, prop) for name, prop in everything if args.only in name]
        if not chosen:
            parser.error(f"no property's name holds {args.only!r}")
        for name, prop in chosen:
            count = {"n": 0}
            inner = prop.hypothesis.inner_test

            @functools.wraps(inner)  # hypothesis then names the arguments of a failing example
            def counted(*a, _inner=inner, **k):
                count["n"] += 1
                return _inner(*a, **k)

            prop.hypothesis.inner_test = counted
            run = settings(max_examples=args.examples, deadline=None, database=None,
                           suppress_health_check=list(HealthCheck))(prop)
            started, failures = time.perf_counter(), 0
            try:
                run()
            except Exception:  # a falsifying example: hypothesis has printed it, shrunk
                traceback.print_exc()
                failures = 1
            seconds = time.perf_counter() - started
            rows.append({"name": name, "examples": count["n"], "seconds": seconds, "failures": failures})
            failed += failures
            print(f"{name}: {count['n']} examples in {seconds:.0f} s, {failures} failure(s)", flush=True)
    for server in servers:
        server.close()
    if args.record:
        old = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
        ran = {row["name"] for row in rows}
        kept = [row for row in old.get("properties", []) if row["name"] not in ran]
        for row in rows:  # which run gave each row's figures
            row.update(command=f"python benchmarks/fuzz.py --examples {args.examples}"
                               + (f" --only {shlex.quote(args.only)}" if args.only else "") + " --record",
                       cpu=cpu_name(), when=time.strftime("%Y-%m-%d"))
        FIGURES.write_text(json.dumps({
            "properties": sorted(kept + rows, key=lambda row: order.index(row["name"]) if row["name"] in order else len(order)),
            "found": old.get("found", "")}, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {FIGURES}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
