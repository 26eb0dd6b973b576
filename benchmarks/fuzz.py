"""The long fuzz run of the recipe loader, the --set parser, batch manifests and checkpoints
(the properties of tests/fuzzing.py, which the suite runs for a few seconds).

    .venv/bin/python benchmarks/fuzz.py --examples 4000 --record

runs each property for that many examples with fresh random seeds, prints what it finds,
and with --record writes the figures into tests/corpus/fuzz_figures.json, from which
docs/reliability.md is generated (`python tests/corpus/corpus.py --docs`). `--only WORDS`
runs the properties whose name holds WORDS (the others keep their recorded figures).
The manifest property also runs, for real, the manifests that list two items or fewer.
"""

from __future__ import annotations

import argparse
import json
import platform
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

    return [("mutations of the shipped recipes", given(mutated=fuzzing.mutated_recipe())(mutated)),
            ("random TOML documents", given(doc=fuzzing.documents)(documents)),
            ("random --set arguments", given(argument=fuzzing.set_arguments)(set_arguments)),
            *output_properties(space)]


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=4000, help="examples per property")
    parser.add_argument("--record", action="store_true", help=f"write the figures to {FIGURES.relative_to(ROOT)}")
    parser.add_argument("--only", metavar="WORDS", help="run only the properties whose name holds WORDS")
    args = parser.parse_args(argv)
    rows, failed = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        space = fuzzing.workspace(Path(tmp))
        for name, prop in properties(space):
            if args.only and args.only not in name:
                continue
            count = {"n": 0}
            inner = prop.hypothesis.inner_test

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
    if args.record:
        earlier = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
        found = earlier.get("found", "")
        command = f"python benchmarks/fuzz.py --examples {args.examples} --record"
        whole = {"command": command, "cpu": cpu_name(), "when": time.strftime("%Y-%m-%d")}
        if args.only:  # the other properties keep the figures of their last run; these say their own
            for row in rows:
                row.update(whole, command=command.replace(" --record", f" --only {args.only!r} --record"))
            ran = {row["name"] for row in rows}
            rows = [row for row in earlier.get("properties", []) if row["name"] not in ran] + rows
            whole = {key: earlier.get(key, value) for key, value in whole.items()}
        FIGURES.write_text(json.dumps({"properties": rows, **whole, "found": found}, indent=1) + "\n")
        print(f"wrote {FIGURES}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
