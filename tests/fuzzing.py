"""Property-based fuzzing of the recipe loader and the `--set` parser (hypothesis).

The property: whatever the recipe text or the command line, `stylekit validate` exits 0, or
2 with `error:` lines, and never raises (a traceback). Three sources of input:

- mutations of the shipped recipes: lines dropped, doubled or swapped, characters
  changed, values replaced by other TOML values of any type;
- random TOML documents built from the recipe's own vocabulary of keys and random values;
- random `--set KEY=VALUE` arguments, from the vocabulary and from arbitrary text.

Used by tests/test_fuzz.py (a bounded run) and benchmarks/fuzz.py (a long one).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from hypothesis import strategies as st

from stylekit.testing import pattern, run_cli, tiny_registry, write_recipe

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "recipes").glob("*.toml"))

SECTIONS = ["images", "output", "backbone", "loss", "optimizer", "scheduler", "run", "stage", "requires"]
FIELDS = ["content", "style", "style_weights", "style_masks", "style_scale", "style_fit", "init", "preserve_colors",
          "background", "max_pixels", "path", "width", "height", "save_every", "record", "plot", "name", "weights",
          "params", "weight", "layers", "layer_weights", "steps", "device", "precision", "seed", "clamp",
          "progress_every", "ema_decay", "checkpoint", "compile", "cuda_graph", "lr", "history", "pooling",
          "normalization", "relu4_2", "c1", "r1", "c3"]
WORDS = ["content", "style", "noise", "gram", "tv", "adam", "lbfgs", "vgg19", "tiny", "caffe", "random", "cpu",
         "auto", "fp32", "bf16", "fp16", "luminance", "histogram", "area", "stretch", "white", "#ff0000",
         "content.png", "style.png", "out/x.png", "out/x.jpg", "x.gif", "", "../etc", "relu1_1", "c3"]


class Workspace(dict):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"Workspace({self['folder']})"


def workspace(folder: Path, registry=None) -> dict:
    """The shipped recipes in folder/recipes, with small stand-ins for their example images,
    and a tiny recipe; returns what the checks need."""
    (folder / "examples").mkdir(parents=True, exist_ok=True)
    for name in ("chelsea.jpg", "swirls.jpg", "embers.jpg"):
        pattern(48, 64, "content" if name == "chelsea.jpg" else "style").save(folder / "examples" / name)
    (folder / "recipes").mkdir(exist_ok=True)
    texts = {}
    for recipe in SHIPPED:
        shutil.copy(recipe, folder / "recipes" / recipe.name)
        texts[recipe.name] = recipe.read_text(encoding="utf-8")
    tiny = write_recipe(folder / "tiny")
    return Workspace(folder=folder, texts=texts, tiny=tiny, registry=registry or tiny_registry())


def validate(space: dict, recipe: Path, *args: str) -> tuple[int, str]:
    """Run `stylekit validate`; any exception other than a clean exit propagates (a failure)."""
    status, out, err = run_cli("validate", str(recipe), *args, registry=space["registry"])
    assert status in (0, 2), (status, err)
    assert "Traceback" not in err
    if status == 2:
        assert err.strip(), "exit 2 without a message"
        assert all(line.startswith(("error: ", "warning: ", "usage: ", "stylekit", " ")) for line in err.splitlines()), err
    return status, err


# ---------------------------------------------------------------- values and documents

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


def toml_value(value) -> str:
    """A value as TOML: inline tables and arrays, so any nesting is one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if -(2**63) <= value < 2**63 else json.dumps(str(value))  # TOML ints are 64-bit
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"


documents = st.dictionaries(st.sampled_from(SECTIONS) | st.text(max_size=6), values, max_size=6)


def toml_document(doc: dict) -> str:
    return "".join(f"{json.dumps(str(k))} = {toml_value(v)}\n" for k, v in doc.items())


# ---------------------------------------------------------------- mutations of the shipped recipes


@st.composite
def mutated_recipe(draw) -> tuple[str, str]:
    """(name of a shipped recipe, its text after one to four random mutations)."""
    name = draw(st.sampled_from([p.name for p in SHIPPED]))
    lines = (ROOT / "recipes" / name).read_text(encoding="utf-8").splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["drop", "double", "swap", "char", "value", "key", "insert"]))
        if kind == "drop":
            del lines[i]
        elif kind == "double":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "char":
            line = lines[i]
            k = draw(st.integers(0, len(line)))
            lines[i] = line[:k] + draw(st.text(max_size=2)) + line[k + 1:]
        elif kind == "value" and "=" in lines[i]:
            lines[i] = lines[i].split("=", 1)[0] + "= " + toml_value(draw(values))
        elif kind == "key" and "=" in lines[i]:
            lines[i] = draw(st.sampled_from(FIELDS)) + " =" + lines[i].split("=", 1)[1]
        else:
            lines.insert(i, f"{draw(st.sampled_from(FIELDS))} = {toml_value(draw(values))}")
    return name, "\n".join(lines) + "\n"


# ---------------------------------------------------------------- --set arguments

def field_keys() -> list[str]:
    """Every field of the recipe schema as a --set key (lists at index 0 and 1), and some params."""
    from pydantic import BaseModel

    from stylekit.recipe.schema import Recipe

    def walk(model, prefix):
        for name, info in model.model_fields.items():
            annotation = info.annotation
            inner = (getattr(annotation, "__args__", None) or (annotation,))[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                for index in ("[0]", "[1]") if annotation is not inner else ("",):
                    yield from walk(inner, f"{prefix}{name}{index}.")
            yield f"{prefix}{name}"

    return sorted(set(walk(Recipe, ""))) + ["optimizer.params.lr", "optimizer.params.history", "loss[1].params.normalization",
                                             "backbone.params.pooling", "scheduler.params.gamma", "images.style[0]"]


FIELD_KEYS = field_keys()

keys = st.one_of(
    st.sampled_from(FIELD_KEYS),
    st.lists(st.sampled_from(SECTIONS + FIELDS) | st.sampled_from(["loss[0]", "loss[1]", "loss[9]", "stage[0]", "[0]", "[-1]", "x[a]"]),
             min_size=1, max_size=4).map(".".join),
    st.text(max_size=15),
)
set_arguments = st.one_of(
    st.tuples(keys, values.map(toml_value)).map("=".join),
    st.tuples(keys, st.text(max_size=15)).map("=".join),
    st.text(max_size=30),
)


# ---------------------------------------------------------------- the answer, and the user's files


def clear_answer(status: int, err: str, allowed: tuple[int, ...]) -> None:
    """A clear answer: an expected exit status, no traceback, and a failure said in `error:`
    lines (progress and warnings aside)."""
    assert status in allowed, (status, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    if status != 0:
        assert any(line.startswith("error: ") or line.startswith("stylekit batch: ") or line.startswith("interrupted")
                   for line in err.splitlines()), err[-2000:]


def files_of(folder: Path) -> dict[str, str]:
    """relative path -> content hash of every file under `folder`."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(folder.rglob("*")) if p.is_file()}


def kept(before: dict[str, str], after: dict[str, str], replaceable=lambda name: False) -> list[str]:
    """The files of `before` that are gone or changed in `after`, but those stylekit may
    replace (`replaceable(name)`: its own output, its record, its checkpoint)."""
    return [name for name, digest in before.items() if after.get(name) != digest and not replaceable(name)]


# ---------------------------------------------------------------- batch manifests (stylekit batch --pairs)

MANIFEST_WORDS = ["content.png", "style.png", "./content.png", "nope.png", "", " ", "../tiny/style.png", "sub/x.png",
                  "recipe.toml", "content.png\0", "\0", "a,b", 'say "x"', "line\nbreak", "line\u2028break", "\ufeff",
                  "content.PNG", "/", "~nouser/x.png", "c" * 300 + ".png"]
manifest_fields = st.one_of(st.sampled_from(["content.png", "style.png"]),  # often real: items that run
                            st.sampled_from(MANIFEST_WORDS), st.text(max_size=12),
                            st.integers(1000, 300_000).map(lambda n: "x" * n))  # past the csv module's field limit
manifest_headers = st.one_of(st.sampled_from([["content", "style"], ["style", "content"], ["content"],
                                              ["content", "style", "note"], ["Content", "Style"], []]),
                             st.lists(st.sampled_from(["content", "style"]) | st.text(max_size=8), max_size=3))


def _csv_text(draw, header: list, rows: list[list]) -> str:
    import csv
    import io

    if draw(st.booleans()):  # written as a spreadsheet would, quoted where needed
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in [header, *rows]:
            writer.writerow(row)
        return buffer.getvalue()
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return end.join(",".join(row) for row in [header, *rows]) + draw(st.sampled_from(["", end]))


@st.composite
def manifests(draw) -> tuple[str, bytes]:
    """(suffix, bytes) of a --pairs manifest: CSV or JSONL rows from paths that exist, that do
    not and odd text, one row repeated many times or not, saved in one of several encodings
    with a few odd bytes put in."""
    if draw(st.integers(0, 3)) == 0:  # a manifest of images that exist, in some shape: items that run
        real = st.sampled_from(["content.png", "style.png", "./style.png", "../tiny/content.png"])
        rows = draw(st.lists(st.lists(real, min_size=2, max_size=2), min_size=1, max_size=2, unique_by=tuple))
        suffix = draw(st.sampled_from([".csv", ".jsonl"]))
        text = (_csv_text(draw, ["content", "style"], rows) if suffix == ".csv"
                else "\n".join(json.dumps({"content": c, "style": s}) for c, s in rows))
    elif draw(st.booleans()):
        suffix = ".csv"
        rows = draw(st.lists(st.lists(manifest_fields, min_size=0, max_size=4), max_size=5))
        if rows and draw(st.booleans()):
            rows += [rows[0]] * draw(st.integers(1, 3000))
        text = _csv_text(draw, draw(manifest_headers), rows)
    else:
        suffix = draw(st.sampled_from([".jsonl", ".ndjson"]))
        row = st.one_of(st.fixed_dictionaries({"content": manifest_fields | values, "style": manifest_fields | values}),
                        st.fixed_dictionaries({"content": manifest_fields}), values)
        lines = [json.dumps(r) for r in draw(st.lists(row, max_size=5))]
        lines += draw(st.lists(st.sampled_from(["{bad", "[" * 50_000, "", "   ", "null", '"text"']) | st.text(max_size=20),
                               max_size=2))
        if lines and draw(st.booleans()):
            lines += [lines[0]] * draw(st.integers(1, 3000))
        text = "\n".join(draw(st.permutations(lines)))
    # Mostly UTF-8, so that what follows the decoding is reached too.
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=3)) + data[at:]
    return suffix, data


def batch_manifest(space: dict, manifest: tuple[str, bytes], run: bool = False) -> None:
    """`stylekit batch --pairs MANIFEST --dry-run` (and with `run`, for real when it lists at
    most two items): exit 0, 2 (or 3, an item failed) with a message, no traceback, and
    nothing outside the output folder changed."""
    suffix, data = manifest
    folder = space["tiny"].parent
    out = folder / "batch-out"
    shutil.rmtree(out, ignore_errors=True)
    path = folder / f"pairs{suffix}"
    path.write_bytes(data)
    before = files_of(folder)
    args = ["batch", str(space["tiny"]), "--pairs", str(path), "-o", str(out), "--steps", "1", "--set", "output.width=32"]
    status, listed, err = run_cli(*args, "--dry-run", registry=space["registry"])
    clear_answer(status, err, (0, 2))
    assert files_of(folder) == before
    if run and status == 0 and len(listed.splitlines()) <= 2:
        status, _, err = run_cli(*args, registry=space["registry"])
        clear_answer(status, err, (0, 3))
        assert not kept(before, files_of(folder), lambda name: name.startswith("batch-out"))


# ---------------------------------------------------------------- checkpoints (stylekit run --resume)

CHECKPOINT_OPTIMIZERS = {"lbfgs": '[optimizer]\nname = "lbfgs"\n[scheduler]\nname = "cosine"\n',
                         "adam": '[optimizer]\nname = "adam"\n'}
SWAPS = [None, True, 0, -1, 7, 2**70, 1.5, math.nan, math.inf, "x", "", [], {}, [1, "a"], {"a": 1}, (1, 2)]


def checkpoint_space(space: dict) -> dict:
    """A recipe per optimizer (with a moving average for Adam) and the state of its run
    stopped at step 3 of 5, made once per workspace."""
    if "checkpoints" not in space:
        import stylekit
        import torch

        from stylekit.testing import TINY_LOSSES, TINY_RECIPE_HEAD

        made = {}
        for name, body in CHECKPOINT_OPTIMIZERS.items():
            head = TINY_RECIPE_HEAD.replace("[run]\n", "[run]\nema_decay = 0.5\n" if name == "adam" else "[run]\n")
            recipe = write_recipe(space["folder"] / f"resume-{name}", TINY_LOSSES + body, head=head)
            plan = stylekit.load(recipe, registry=space["registry"])
            checkpoint = recipe.parent / "made.pt"
            stylekit.stylize(plan, callback=lambda info: info.step == 3 and info.stop(), checkpoint=checkpoint)
            made[name] = (recipe, torch.load(checkpoint, weights_only=True))
        space["checkpoints"] = made
    return space["checkpoints"]


def _places(value, path: tuple = ()) -> list[tuple]:
    """The path of every value inside a checkpoint's state (dict keys, list indexes); of its
    copy of the recipe only the whole (any change there is 'a different recipe')."""
    found = [path] if path else []
    if path == ("recipe",):
        return found
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _places(inner, (*path, key))
    elif isinstance(value, list) and len(value) <= 12:  # a loss history's rows: a few are enough
        for index, inner in enumerate(value):
            found += _places(inner, (*path, index))
    elif isinstance(value, list):
        for index in (0, len(value) - 1):
            found += _places(value[index], (*path, index))
    return found


mutations = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["drop", "swap", "reshape", "repeat"]),
                               st.integers(0, 10**6)), min_size=1, max_size=3)


def mutated(state: dict, changes: list[tuple[int, str, int]]) -> dict:
    """`state` (a copy) after each change (which place, what to do, a number to choose with):
    a key dropped, a value swapped for one of another type, a tensor reshaped, cast or
    poisoned, a list repeated."""
    import copy

    import torch

    state = copy.deepcopy(state)
    for where, what, pick in changes:
        places = _places(state)
        if not places:
            break
        *parents, last = places[where % len(places)]
        holder = state
        for key in parents:
            holder = holder[key]
        value = holder[last]
        if what == "drop":
            del holder[last]
        elif what == "swap":  # a copy: a list of SWAPS put in the state may be changed by the next change
            holder[last] = copy.deepcopy(SWAPS[pick % len(SWAPS)]) if pick % 3 else torch.zeros(pick % 5 + 1)
        elif what == "reshape" and isinstance(value, torch.Tensor):
            ways = [lambda t: t.flatten(), lambda t: t.unsqueeze(0), lambda t: t[..., : max(1, t.shape[-1] // 2)] if t.dim() else t,
                    lambda t: t.long(), lambda t: t.half(), lambda t: t * math.nan, lambda t: t.transpose(-1, -2) if t.dim() > 1 else t,
                    lambda t: torch.zeros(0)]
            holder[last] = ways[pick % len(ways)](value)
        elif what == "repeat" and isinstance(value, list):
            holder[last] = value * (2 + pick % 60)
        else:
            holder[last] = copy.deepcopy(SWAPS[pick % len(SWAPS)])
    return state


def resumed_checkpoint(space: dict, optimizer: str, changes: list[tuple[int, str, int]]) -> None:
    """`stylekit run --resume` from a mutated checkpoint: exit 0 (it still adds up), 2 with
    a message, or 3 (it diverged); never a traceback, and the user's files kept: the
    checkpoint stays as it was unless the run went through (then it is finished, and removed)."""
    import torch

    recipe, state = checkpoint_space(space)[optimizer]
    out = recipe.parent / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    torch.save(mutated(state, changes), out / "result.checkpoint.pt")
    before = files_of(recipe.parent)
    status, _, err = run_cli("run", str(recipe), "--resume", registry=space["registry"])
    clear_answer(status, err, (0, 2, 3))
    after = files_of(recipe.parent)
    if status == 2:
        assert after == before
    else:
        assert not kept(before, after, lambda name: name.startswith("out/result."))
