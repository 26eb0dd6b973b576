"""The reliability corpus: bad (and odd) inputs, each with the exit status and the words
stylekit must answer with, and what must be left untouched.

`cases.toml` lists the cases (the input, the command line, the exit status, what is kept);
`said.json` holds the exact lines each case prints on stderr (progress lines aside), with
the case's folder shown as a relative path. The test suite runs every case
(tests/test_corpus.py); docs/reliability.md is generated from both files, and from
`live_cases.toml` (requests to the live page's server, with their status and answer, which
tests/test_live.py sends) and `fuzz_figures.json` (benchmarks/fuzz.py's last runs):

    python tests/corpus/corpus.py --docs     # rewrite docs/reliability.md
    python tests/corpus/corpus.py --update   # rerun every case and rewrite said.json (review the diff!)
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tempfile
import threading
import time
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DOC = ROOT / "docs" / "reliability.md"
SAID = HERE / "said.json"
FUZZ_FIGURES = HERE / "fuzz_figures.json"
LIVE_CASES = HERE / "live_cases.toml"
sys.path.insert(0, str(HERE))

from make_images import make  # noqa: E402

from stylekit.contract import LossTerm, SequentialBackbone  # noqa: E402
from stylekit.errors import UserError  # noqa: E402
from stylekit.contract.hookspecs import hookimpl  # noqa: E402
from stylekit.plugins.registry import PluginInfo  # noqa: E402
from stylekit.testing import TINY_LOSSES, TINY_RECIPE_HEAD, run_cli, tiny_registry, write_recipe  # noqa: E402

#: Lines of a successful run's progress display: not part of what a case "says".
PROGRESS = ("stylekit 0.1.0: ", "step ", "stage ", "wrote ")

VGG_RECIPE = TINY_RECIPE_HEAD.replace('name = "tiny"', 'name = "vgg19"') + """
[[loss]]
name = "content"
layers = ["relu4_2"]

[[loss]]
name = "gram"
weight = 1e3
layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
"""


# ---------------------------------------------------------------- plugins that fail


class _Raises(LossTerm):
    """A loss term that fails in its forward pass as `error()` says."""

    default_layers = ("c3",)

    def forward(self, features, image):
        raise self.error()


class CpuOutOfMemory(_Raises):
    name = "cpu_oom"

    def error(self):  # the exact text torch's CPU allocator raises
        return RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                            "you tried to allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)")


class CudaOutOfMemory(_Raises):
    name = "cuda_oom"

    def error(self):
        return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class PythonOutOfMemory(_Raises):
    name = "memory_error"

    def error(self):
        return MemoryError()


class SaysWhatIsWrong(_Raises):
    name = "needs_mask"

    def error(self):
        return UserError("loss 'needs_mask' needs images.style_masks - add one mask per style image")


class Buggy(_Raises):
    name = "buggy"

    def error(self):  # a bug in the plugin, not a word about the user's input
        return ZeroDivisionError("division by zero")


class Pooled(SequentialBackbone):
    """Three 2x2 max-pools: reads layer p3 only from images of 8 pixels or more a side. It
    does not say so (min_input_side_for is the default), so only the run finds out."""

    name = "pooled"

    @classmethod
    def layer_names_for(cls, params):
        return ("c1", "p1", "p2", "p3")

    def __init__(self, params, weights="random"):
        super().__init__(OrderedDict(c1=nn.Conv2d(3, 4, 3, padding=1), p1=nn.MaxPool2d(2), p2=nn.MaxPool2d(2),
                                     p3=nn.MaxPool2d(2)))
        self.params = params


class PooledAndSaysSo(Pooled):
    name = "pooled_declared"

    @classmethod
    def min_input_side_for(cls, params, layers):
        return 2 ** max((int(name[1]) for name in layers if name.startswith("p")), default=0)


class CorpusPlugin:
    @hookimpl
    def register_losses(self, register):
        for cls in (CpuOutOfMemory, CudaOutOfMemory, PythonOutOfMemory, SaysWhatIsWrong, Buggy):
            register(cls)

    @hookimpl
    def register_backbones(self, register):
        register(Pooled)
        register(PooledAndSaysSo)


def registry():
    return tiny_registry(extra=[(CorpusPlugin(), PluginInfo("corpus", "stylekit-corpus", "1.0"))])


# ---------------------------------------------------------------- set-ups


def _copy(source: str, target: str):
    return lambda folder, mp: (folder / target).write_bytes((folder / source).read_bytes())


def _low_memory(folder, mp):
    import stylekit.files.sizes

    # Read through the module everywhere (decoding an image, the pre-run estimate, batch).
    mp.setattr(stylekit.files.sizes, "available_memory", lambda device: 64 << 10)


def _subfolder_recipe(folder, mp):
    """The recipe and its images in recipes/, an image 'start.png' in the current folder only."""
    write_recipe(folder / "recipes")
    (folder / "start.png").write_bytes((folder / "content.png").read_bytes())
    (folder / "content.png").unlink()


def _fifo(relative: str):
    """A FIFO (named pipe) at `relative`, which nothing ever writes to. Opening it to read
    blocks until a writer comes; so that a regression fails its case rather than hanging
    the suite, a watchdog thread, after a grace time no correct run needs, opens it for
    writing whenever a reader waits and closes it at once: the reader sees an empty file."""
    def setup(folder, mp):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        threading.Thread(target=_unblock_readers, args=(path,), daemon=True).start()
    return setup


def _unblock_readers(path: Path, grace: float = 2.0) -> None:
    time.sleep(grace)
    while path.exists():  # until the case's folder is removed
        try:  # O_NONBLOCK: fails at once (ENXIO) unless a reader is waiting in open()
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        time.sleep(0.1)


def _append_to_recipe(text: str):
    def setup(folder, mp):
        recipe = folder / "recipe.toml"
        recipe.write_text(recipe.read_text(encoding="utf-8") + text, encoding="utf-8")
    return setup


def _replace_in_recipe(old: str, new: str):
    def setup(folder, mp):
        recipe = folder / "recipe.toml"
        recipe.write_text(recipe.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    return setup


#: Deeper than the 64 levels a recipe may nest, and than tomllib's and json's recursion
#: reach (about 300 levels), which used to end in a RecursionError traceback.
DEEP = 5000


def _batch_folder_with_fifo(folder, mp):
    (folder / "photos").mkdir()
    (folder / "photos" / "a.png").write_bytes((folder / "content.png").read_bytes())
    _fifo("photos/pipe.jpg")(folder, mp)


SETUPS = {
    "existing_output": lambda folder, mp: ((folder / "out").mkdir(), (folder / "out" / "result.png").write_bytes(b"precious")),
    "package_json": lambda folder, mp: (folder / "package.json").write_text('{"name": "my-app", "version": "1.0.0"}\n'),
    "old_record": lambda folder, mp: ((folder / "out").mkdir(), (folder / "out" / "result.json").write_text(
        json.dumps({"recipe_file": "recipe.toml", "versions": {"stylekit": "0.1.0"}}))),
    "record_is_folder": lambda folder, mp: (folder / "out" / "result.json").mkdir(parents=True),
    "stale_temp": lambda folder, mp: ((folder / "out").mkdir(), (folder / "out" / ".result.png.999999999.stylekit-tmp").write_bytes(b"")),
    "folder_png": lambda folder, mp: (folder / "folder.png").mkdir(),
    "photos_folder": lambda folder, mp: (folder / "photos").mkdir(),
    "notes_file": lambda folder, mp: (folder / "notes.txt").write_text("my notes\n"),
    "mask_png": _copy("style.png", "mask.png"),
    "shot_losses_png": _copy("content.png", "shot.losses.png"),
    "shot_step_png": _copy("content.png", "shot.step00002.png"),
    "recipe_bom": lambda folder, mp: (folder / "recipe.toml").write_bytes(b"\xef\xbb\xbf" + (folder / "recipe.toml").read_bytes()),
    "recipe_utf16": lambda folder, mp: (folder / "recipe.toml").write_bytes((folder / "recipe.toml").read_text().encode("utf-16")),
    "recipe_binary": lambda folder, mp: (folder / "recipe.toml").write_bytes(bytes(range(256))),
    "recipe_empty": lambda folder, mp: (folder / "recipe.toml").write_text(""),
    "recipe_folder": lambda folder, mp: (folder / "folder.toml").mkdir(),
    "low_memory": _low_memory,
    "subfolder_recipe": _subfolder_recipe,
    # hostile inputs (issue 19): special files, huge and deep recipes
    "fifo_png": _fifo("pipe.png"),
    "fifo_recipe": _fifo("pipe.toml"),
    "fifo_record": _fifo("out/result.json"),
    "fifo_manifest": _fifo("pairs.csv"),
    "batch_folder_with_fifo": _batch_folder_with_fifo,
    "recipe_2mb": _append_to_recipe(("#" + "x" * 1023 + "\n") * 2048),  # 2 MB of comments
    "deep_inline_table": _append_to_recipe("[backbone.params]\nx = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n"),
    "deep_array": _append_to_recipe("[backbone.params]\nx = " + "[" * DEEP + "1" + "]" * DEEP + "\n"),
    "deep_dotted_key": _append_to_recipe("[backbone.params]\n" + ".".join(["a"] * DEEP) + " = 1\n"),
    "deep_header": _append_to_recipe("[" + ".".join(["a"] * DEEP) + "]\nb = 1\n"),
    "deep_array_of_tables": _append_to_recipe("[[" + ".".join(["a"] * DEEP) + "]]\nb = 1\n"),
    "recipe_steps_true": _replace_in_recipe("steps = 5", "steps = true"),
    "pairs_csv": lambda folder, mp: (folder / "pairs.csv").write_text("content,style\ncontent.png,style.png\n"),
    "plugins_env_misspelt": lambda folder, mp: mp.setenv("STYLEKIT_PLUGINS", "stylekit-mfr"),
}


# ---------------------------------------------------------------- set-ups of files beside the output and manifests


def _in_out(name: str, make):
    def setup(folder, mp):
        (folder / "out").mkdir(exist_ok=True)
        make(folder / "out" / name)
    return setup


def _pairs(name: str, text: str):
    return lambda folder, mp: (folder / name).write_text(text, encoding="utf-8")


def _own_styles(folder, mp):
    (folder / "painting.png").write_bytes((folder / "style.png").read_bytes())
    (folder / "style.png").unlink()
    (folder / "pairs.csv").write_text("content,style\ncontent.png,painting.png\n")


def _long_name(folder, mp):
    (folder / ("c" * 245 + ".png")).write_bytes((folder / "content.png").read_bytes())
    (folder / "pairs.csv").write_text(f"content,style\ncontent.png,style.png\n{'c' * 245}.png,style.png\n")


SETUPS.update({
    "foreign_checkpoint": _in_out("result.checkpoint.pt", lambda path: path.write_text("precious")),
    "foreign_step": _in_out("result.step00002.png", lambda path: path.write_text("mine")),
    "foreign_plot": _in_out("result.losses.png", lambda path: path.write_text("mine")),
    "checkpoint_folder": _in_out("result.checkpoint.pt", lambda path: path.mkdir()),
    "pairs_nul": _pairs("pairs.csv", "content,style\ncontent.png\0,style.png\n"),
    "pairs_wide": _pairs("pairs.csv", "content,style\n" + "x" * 200_000 + ",style.png\n"),
    "pairs_repeated": _pairs("pairs.csv", "content,style\n" + "content.png,style.png\n" * 5000),
    "pairs_deep": _pairs("pairs.jsonl", "[" * 100_000 + "\n"),
    "pairs_own_styles": _own_styles,
    "pairs_long_name": _long_name,
})


# ---------------------------------------------------------------- running a case


@dataclass
class Case:
    id: str
    area: str
    what: str
    args: list[str]
    status: int
    kept: str
    images: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    recipe: str | None = None  # the recipe's text; "vgg" for a VGG-19 recipe; default: the tiny one
    output_size: list[int] | None = None  # [width, height] the output must have


def cases() -> list[Case]:
    return [Case(**raw) for raw in tomllib.loads((HERE / "cases.toml").read_text(encoding="utf-8"))["case"]]


@dataclass
class Outcome:
    status: int
    said: list[str]
    stdout: str
    stderr: str
    before: dict[str, str]
    after: dict[str, str]


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> content hash (or 'folder') of everything under `folder`."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            found[key] = "folder"
        elif stat.S_ISREG(mode):
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        else:  # a FIFO or a link to a device: never opened (reading one may block or never end)
            found[key] = f"special {stat.S_IFMT(mode):o}"
    return found


def run_case(case: Case, folder: Path) -> Outcome:
    recipe = {None: TINY_RECIPE_HEAD + "\n" + TINY_LOSSES, "vgg": VGG_RECIPE}.get(case.recipe, case.recipe)
    write_recipe(folder, body="", head=recipe)
    with pytest.MonkeyPatch.context() as mp:
        for name in case.images:
            make(name, folder)
        for name in case.setup:
            SETUPS[name](folder, mp)
        mp.chdir(folder)
        before = snapshot(folder)
        status, out, err = run_cli(*case.args, registry=registry())
        after = snapshot(folder)
    return Outcome(status, said(err, folder), out, err, before, after)


def said(stderr: str, folder: Path) -> list[str]:
    """The lines a case says on stderr, with its folder written as a relative path."""
    lines = []
    for line in stderr.splitlines():
        # argparse's usage summary changes with every new option; its error line is what counts
        if line.startswith(PROGRESS) or line.startswith("usage: ") or line.startswith(" " * 10):
            continue
        for prefix in {str(folder.resolve()), str(folder)}:
            line = line.replace(prefix + os.sep, "").replace(prefix, ".")
        lines.append(line)
    return lines


def update() -> None:
    found = {}
    for case in cases():
        with tempfile.TemporaryDirectory() as tmp:
            outcome = run_case(case, Path(tmp))
        found[case.id] = outcome.said
        print(f"{case.id}: {outcome.status} (expected {case.status})", *outcome.said, sep="\n  ")
    SAID.write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- docs/reliability.md


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def docs_markdown() -> str:
    said_by = json.loads(SAID.read_text(encoding="utf-8"))
    all_cases = cases()
    lines = ["# Reliability: every bad input gets a clear answer", "",
             "Generated by `python tests/corpus/corpus.py --docs` from `tests/corpus/cases.toml` and",
             "`tests/corpus/said.json` (and the sections at the end from `live_cases.toml` and",
             "`fuzz_figures.json` there); do not edit by hand. The test suite (`tests/test_corpus.py`) runs",
             "every case below and checks its exit status, that stylekit says exactly these lines on stderr",
             "(progress lines aside; the case's folder shown as `.`), that no traceback is printed and that,",
             "when the exit status is not 0, no file in the folder was changed, added or removed.",
             "The images are made at test time by `tests/corpus/make_images.py`; the cases run with the",
             "tiny test backbone (`stylekit.testing`) and a plugin of failing components",
             "(`tests/corpus/corpus.py`), or with VGG-19 where the case is about its size limits.", "",
             f"{len(all_cases)} cases; exit status 2 means bad input, 3 a run that failed (a plugin's bug), 0 a run "
             "or check that went through.", ""]
    for area in dict.fromkeys(case.area for case in all_cases):
        lines += [f"## {area}", "", "| case | command line | exit | what stylekit says | what is kept |", "|---|---|---|---|---|"]
        for case in (c for c in all_cases if c.area == area):
            command = "stylekit " + " ".join(arg if arg and " " not in arg and arg.isprintable() else repr(arg)
                                             for arg in case.args)
            says = "<br>".join(f"`{_cell(line)}`" for line in said_by.get(case.id, [])) or "(nothing)"
            lines.append(f"| **{case.id}**: {_cell(case.what)} | `{_cell(command)}` | {case.status} | {says} | {_cell(case.kept)} |")
        lines.append("")
    lines += live_section()
    lines += fuzz_section()
    return "\n".join(lines)


def live_section() -> list[str]:
    """The requests of live_cases.toml, which tests/test_live.py sends to a live server."""
    cases = tomllib.loads(LIVE_CASES.read_text(encoding="utf-8"))["request"]
    lines = ["## The live page's server", "",
             "`tests/test_live.py` sends each request below, in this order, to a live server (`--live`) bound",
             "to 127.0.0.1 without a token, holding the runs `main`, `a b#1.style` and `Zoë.style` (a batch's",
             "keys are its output files' names); `PORT` is its port. It checks the status, the exact text of",
             "the answer where one is shown, that nothing is printed on the terminal, and that no run is",
             "stopped but by the last request. The rule: on a loopback address a request must name the",
             "server as it was started in its Host header (`localhost` or the bound address, with the port),",
             "and one that carries an Origin header must come from the page itself; off loopback every",
             "request carries the printed token instead, and the Host is not checked (the Origin still is).",
             "Query values are parsed strictly (counts: 1 to 9 ASCII digits). The same file also checks the",
             "token, IPv6 (`--live-host ::1`, printed as `http://[::1]:PORT/`) and that a handler's failure",
             "is a bare 500 that prints nothing; `tests/test_browser.py` loads a batch's page whose file",
             "names hold quotes, angle brackets, spaces, `#` and non-ASCII letters in Chromium: every image",
             "shows and no name runs as script. A request shown without a Host line carries the page's own,", "`Host: 127.0.0.1:PORT`.", "",
             f"{len(cases)} requests.", "",
             "| case | request | status | what the server says |", "|---|---|---|---|"]
    for case in cases:
        headers = case.get("headers", {"Host": "127.0.0.1:{port}"})
        shown = [f"{case.get('method', 'GET')} {case['path']}"] + [f"{k}: {v}" for k, v in headers.items() if
                                                                     (k, v) != ("Host", "127.0.0.1:{port}")]
        if "Host" not in headers:
            shown.append("(no Host)")
        request = "<br>".join(f"`{_cell(line.replace('{port}', 'PORT'))}`" for line in shown)
        says = f"`{_cell(case['says'].replace('{port}', 'PORT'))}`" if "says" in case else ""
        if case.get("stops"):
            says = (says + " " if says else "") + "(the run stops)"
        lines.append(f"| **{case['id']}**: {_cell(case['what'])} | {request} | {case['status']} | {says} |")
    return lines + [""]


def fuzz_section() -> list[str]:
    lines = ["## The fuzzer", "",
             "`tests/test_fuzz.py` runs a bounded property-based fuzz in the suite (hypothesis): mutations",
             "of the shipped recipes, random TOML documents and random `--set` arguments must each give exit",
             "status 0, or 2 with `error:` lines and no traceback. So must recipes nested up to 1,200 levels",
             "deep (arrays, inline tables, dotted keys, headers) and numbers at the edges of what TOML, torch",
             "and float32 hold (run for a step where validate lets one through: exit 0, 2 or 3, never a",
             "traceback); booleans where numbers belong are always refused. So must `stylekit batch --pairs`",
             "manifests (CSV and JSONL rows of paths that exist, that do not and odd text, rows repeated",
             "thousands of times, fields past the CSV reader's limit, other encodings and odd bytes) and",
             "`stylekit run --resume` from checkpoints changed at random (keys dropped, values swapped for",
             "others of another type, tensors reshaped, cast or filled with NaN, lists repeated), where exit 3",
             "(a failed item, a diverged run) may also come and nothing of the user's may change. Requests to",
             "a running live server (the page's own with any key and any value, and any request line: path,",
             "query string, method, Host and Origin) must each get an answer below 500 (501 for a method it",
             "does not serve), print nothing on stderr, and leave the server answering the page's next poll.",
             "`benchmarks/fuzz.py` runs the same properties for longer; the last run of each:", ""]
    if not FUZZ_FIGURES.exists():
        return lines + ["(not run yet)", ""]
    figures = json.loads(FUZZ_FIGURES.read_text(encoding="utf-8"))
    rows = figures["properties"]
    lines += ["| property | examples | seconds | failures found | run |", "|---|---|---|---|---|"]
    runs = list(dict.fromkeys((row["command"], row["cpu"], row["when"]) for row in rows))
    for row in rows:
        lines.append(f"| {row['name']} | {row['examples']} | {row['seconds']:.0f} | {row['failures']} | "
                     f"{runs.index((row['command'], row['cpu'], row['when'])) + 1} |")
    lines.append(f"| all | {sum(r['examples'] for r in rows)} | {sum(r['seconds'] for r in rows):.0f} | "
                 f"{sum(r['failures'] for r in rows)} | |")
    lines.append("")
    lines += [f"Run {i}: `{command}`; CPU: {cpu}; {when}." for i, (command, cpu, when) in enumerate(runs, 1)]
    lines.append("")
    lines += [f"Found and fixed on the way: {figures['found']}", ""] if figures.get("found") else []
    return lines


def main(argv: list[str]) -> int:
    if "--update" in argv:
        update()
    if "--docs" in argv or "--update" in argv:
        DOC.write_text(docs_markdown(), encoding="utf-8")
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
