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


# ---------------------------------------------------------------- deep nesting, huge numbers, booleans for counts
# Each its own strategy and property, to compose with the others (tests/test_fuzz.py,
# benchmarks/fuzz.py): the values the schema used to let through to a traceback.

#: Deeper than tomllib's and json's recursion reaches (about 300 levels), and shallower.
DEPTHS = st.one_of(st.integers(1, 80), st.integers(250, 1200))


@st.composite
def deep_recipe(draw) -> str:
    """The tiny recipe with one deeply nested thing added: arrays, inline tables, a dotted
    key or a table header, 1 to 1200 levels deep, under a section or at the top."""
    from stylekit.testing import TINY_LOSSES, TINY_RECIPE_HEAD

    depth, kind = draw(DEPTHS), draw(st.sampled_from(["array", "inline", "dotted", "header", "array_of_tables", "mixed"]))
    key = draw(st.sampled_from(FIELDS))
    leaf = toml_value(draw(scalars))
    if kind == "array":
        added = f"[run]\n{key} = " + "[" * depth + leaf + "]" * depth
    elif kind == "inline":
        added = f"[backbone.params]\n{key} = " + f"{{{key} = " * depth + leaf + "}" * depth
    elif kind == "dotted":
        added = "[backbone.params]\n" + ".".join([key] * depth) + f" = {leaf}"
    elif kind in ("header", "array_of_tables"):
        brackets = ("[", "]") if kind == "header" else ("[[", "]]")
        added = brackets[0] + ".".join([draw(st.sampled_from(SECTIONS))] + [key] * depth) + brackets[1] + f"\n{key} = {leaf}"
    else:  # a header, a dotted key and arrays, each shallow, deep together
        third = max(1, depth // 3)
        added = "[" + ".".join(["loss_x"] * third) + "]\n" + ".".join([key] * third) + " = " + "[" * third + leaf + "]" * third
    # Before the [[loss]] tables: a key added after them would belong to the last loss.
    return TINY_RECIPE_HEAD + "\n" + added + "\n\n" + TINY_LOSSES


#: Numbers at the edges of what TOML, Python, torch and float32 hold.
EDGES = [2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64 - 1, 2**64, 10**20, 10**400,
         1e38, 3.5e38, 1e300, 1e308, -1e308, 5e-324, 1e-300, 2.2250738585072014e-308, -0.0]
huge_numbers = st.one_of(st.sampled_from(EDGES), st.integers(min_value=2**62, max_value=2**200).map(lambda n: n * (-1) ** (n % 2)),
                         st.floats(min_value=1e30, max_value=1e308), st.floats(min_value=-1e308, max_value=-1e30))


def number_keys() -> list[str]:
    """The --set keys of the schema's fields that hold numbers (integers or floats, alone, in
    lists or in tables), and the built-in components' numeric params."""
    import typing

    from pydantic import BaseModel

    from stylekit.recipe.schema import Recipe

    def holds_numbers(annotation) -> bool:
        args = typing.get_args(annotation)
        if annotation in (int, float):
            return True
        return any(holds_numbers(arg) for arg in args if arg is not bool)

    def walk(model, prefix):
        for name, info in model.model_fields.items():
            annotation = info.annotation
            inner = (typing.get_args(annotation) or (annotation,))[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                yield from walk(inner, f"{prefix}{name}{'' if annotation is inner else '[0]'}.")
            elif holds_numbers(annotation):
                yield f"{prefix}{name}"

    params = ["optimizer.params.lr", "optimizer.params.history", "optimizer.params.eps", "optimizer.params.momentum",
              "scheduler.params.gamma", "scheduler.params.step_size", "scheduler.params.min_lr", "loss[1].layers.r1"]
    # loss[N].layers holds numbers only as a table's values: loss[1].layers.r1 stands for it.
    return sorted(set(walk(Recipe, "")) - {"loss[0].layers"}) + params


NUMBER_KEYS = number_keys()
#: Components that take the numeric params above, so that a value reaches its field's check.
COMPONENT_SETS = {"optimizer.params.lr": ["optimizer.name=adam"], "optimizer.params.eps": ["optimizer.name=adam"],
                  "optimizer.params.history": ["optimizer.name=lbfgs"], "optimizer.params.momentum": ["optimizer.name=sgd"],
                  "scheduler.params.gamma": ["scheduler.name=step"], "scheduler.params.step_size": ["scheduler.name=step"],
                  "scheduler.params.min_lr": ["scheduler.name=cosine"],
                  "loss[1].layers.r1": ["loss[1].layers={r1 = 1}"],
                  **{f"stage[0].{name}": ["stage=[{width = 16, steps = 1}]"] for name in ("width", "height", "steps")}}
#: Fields that hold a list of numbers (one per style image, one per layer): given a list of one.
LIST_KEYS = {"images.style_weights", "loss[0].layer_weights"}


def set_args(key: str, value) -> list[str]:
    """`--set` arguments giving `value` to `key`, with the component that reads it chosen."""
    value = [value] if key in LIST_KEYS else value
    return [arg for text in (*COMPONENT_SETS.get(key, ()), f"{key}={toml_value(value)}") for arg in ("--set", text)]


huge_number_sets = st.tuples(st.sampled_from(NUMBER_KEYS), huge_numbers).map(lambda kv: set_args(*kv))
boolean_number_sets = st.tuples(st.sampled_from(NUMBER_KEYS), st.booleans()).map(lambda kv: set_args(*kv))


#: Fields whose valid values make a run long (up to 100,000 steps): validated, not run.
LONG_RUN_KEYS = {"run.steps", "stage[0].steps"}


def run_briefly(space: dict, *args: str) -> tuple[int, str] | None:
    """Run the tiny recipe for one step at 16 pixels wide with `args`: exit 0, 2 or 3 (a run
    that diverged), never a traceback. For values that validate lets through, where the
    run itself used to fail (run.seed = 2**64, images.style_scale = 1e30). None, and not
    run, where `args` set the number of steps."""
    if any(arg.split("=", 1)[0] in LONG_RUN_KEYS for arg in args):
        return None
    status, _, err = run_cli("run", str(space["tiny"]), "--steps", "1", "--set", "output.width=16", *args,
                             registry=space["registry"])
    assert status in (0, 2, 3), (status, err)
    assert "Traceback" not in err
    if status:
        assert err.strip(), f"exit {status} without a message"
    return status, err
