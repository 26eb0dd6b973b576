"""Property-based fuzzing of the recipe loader, the `--set` parser and the live page's
server (hypothesis).

The property: whatever the recipe text or the command line, `stylekit validate` exits 0, or
2 with `error:` lines, and never raises (a traceback). Three sources of input:

- mutations of the shipped recipes: lines dropped, doubled or swapped, characters
  changed, values replaced by other TOML values of any type;
- random TOML documents built from the recipe's own vocabulary of keys and random values;
- random `--set KEY=VALUE` arguments, from the vocabulary and from arbitrary text.

And for the live page's server (stylekit/commands/live.py): whatever the request's path, query
string, Host and Origin, the answer is below 500 (501 only for a method it does not
serve), nothing is printed on stderr, and the server answers the page's next poll.

Used by tests/test_fuzz.py (a bounded run) and benchmarks/fuzz.py (a long one).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from hypothesis import strategies as st

from stylekit.testing import pattern, run_cli, tiny_registry, write_recipe

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "recipes").glob("*.toml"))

SECTIONS = ["images", "output", "backbone", "loss", "optimizer", "scheduler", "flow", "run", "stage", "requires"]
FIELDS = ["content", "style", "style_weights", "style_masks", "style_scale", "style_fit", "init", "preserve_colors",
          "background", "max_pixels", "path", "width", "height", "save_every", "record", "plot", "name", "weights",
          "params", "weight", "layers", "layer_weights", "steps", "device", "precision", "seed", "clamp",
          "progress_every", "ema_decay", "checkpoint", "compile", "cuda_graph", "lr", "history", "pooling",
          "normalization", "relu4_2", "c1", "r1", "c3", "preset", "forward", "backward", "first", "model", "iterations"]
WORDS = ["content", "style", "noise", "gram", "tv", "adam", "lbfgs", "vgg19", "tiny", "caffe", "random", "cpu",
         "auto", "fp32", "bf16", "fp16", "luminance", "histogram", "area", "stretch", "white", "#ff0000",
         "content.png", "style.png", "out/x.png", "out/x.jpg", "x.gif", "", "../etc", "relu1_1", "c3", "dis", "raft",
         "file", "f_{source}_{target}.flo", "{source:{0}}{target}"]


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


# ---------------------------------------------------------------- the live page's server

LIVE_KEYS = ["main", 'x" onerror="alert(1).style', "a b#1.style", "Zoë.style", "100%.style"]
LIVE_TOKEN = "s3cret"


def live_server():
    """A LiveServer on loopback holding a few runs, watched, each with its images."""
    from stepinfo_fakes import Counter, fake_steps

    from stylekit.commands.live import LiveServer

    server = LiveServer("127.0.0.1", 0)
    server.start()
    for key in LIVE_KEYS:
        callback = server.run(key, key)
        server.state_json()  # watched: the images are kept
        for info in fake_steps(3, Counter()):
            callback(info)
    return server


@dataclass
class LiveRequest:
    method: str
    target: bytes  # as it goes on the request line
    headers: list[tuple[str, str]]  # '{port}' stands for the server's port
    token: bool  # whether the server wants a token (as when bound off loopback)


_PARTS = ["", "state", "image", "stop", "current.jpg", "content.jpg", "style0.jpg", "style9.jpg", "current", ".jpg",
          "..", ".", "%2F", "%00", "%", "%G1", "%C2%B2", "%FF", "//"] + LIVE_KEYS
_NAMES = ["since.main", "v", "token", "run", "since.", "since.x", "", "since.since."] + [f"since.{k}" for k in LIVE_KEYS]
_VALUES = ["0", "1", "3", "999999999", "1000000000", "²", "٣", "１", "9" * 5000, "-1", "+1", "1e3", "0x1", " 1", "",
           LIVE_TOKEN, "wrong"] + LIVE_KEYS


# Text that looks like a count: any of the characters str.isdigit() takes (the decimal digits
# of every script, which int() reads, and others such as '²', which it does not), Unicode's
# other numbers ('½', 'Ⅻ'), signs and exponents; and whole numbers of any length.
_DIGITS = "".join(chr(i) for i in range(0x110000) if chr(i).isdigit())
numberish = st.one_of(
    st.text(st.sampled_from(_DIGITS), min_size=1, max_size=4),
    st.text(st.sampled_from(_DIGITS) | st.characters(categories=["No", "Nl"]) | st.sampled_from("0123456789+-e_. "),
            min_size=1, max_size=6),
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.integers(1, 6000).map(lambda n: "9" * n),
)


def _encoded(text: str, draw) -> str:
    """`text` percent-encoded, or left as it is (any byte but CR and LF goes on the request line)."""
    return draw(st.sampled_from([quote(text, safe=""), quote(text, safe="/?&=%#+ "), text]))


def _headers(draw, hosts: list[str]) -> list[tuple[str, str]]:
    headers = [("Host", draw(st.sampled_from(hosts) | st.text(max_size=12))) for _ in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):
        origins = ["http://127.0.0.1:{port}", "http://evil.example", "null", ""]
        headers.append(("Origin", draw(st.sampled_from(origins) | st.text(max_size=12))))
    if draw(st.booleans()):
        headers.append(("X-Stylekit-Stop", draw(st.sampled_from(["1", "0", ""]) | st.text(max_size=3))))
    return [(k, v.replace("\r", "").replace("\n", "")) for k, v in headers]


def _raw(target: str, draw) -> bytes:
    raw = target.encode("utf-8", "surrogatepass") if draw(st.booleans()) else target.encode("utf-8", "replace")
    return raw.replace(b"\r", b"").replace(b"\n", b"")


@st.composite
def page_requests(draw) -> LiveRequest:
    """The requests the page sends (state since a count, an image of a version, Stop), with
    any key and any value, sometimes a few fields more, and mostly the page's own Host;
    percent-encoded as the page does (encodeURIComponent)."""
    kind = draw(st.sampled_from(["state", "image", "stop"]))
    key = draw(st.sampled_from(LIVE_KEYS) | st.text(max_size=8))
    value = draw(numberish | st.sampled_from(_VALUES) | st.text(max_size=8))
    if kind == "state":
        path, fields = "/state", [(f"since.{key}", value)]
    elif kind == "image":
        name = draw(st.sampled_from(["current", "content", "style0", "style9"]) | st.text(max_size=8))
        path, fields = f"/image/{quote(key, safe='')}/{quote(name, safe='')}.jpg", [("v", value)]
    else:
        path, fields = "/stop", [("run", key)]
    fields += draw(st.lists(st.tuples(st.sampled_from(_NAMES) | st.text(max_size=6),
                                      st.sampled_from(_VALUES) | st.text(max_size=6)), max_size=2))
    token = draw(st.booleans())
    if token:  # as the page off loopback sends it
        fields.append(("token", LIVE_TOKEN))
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in draw(st.permutations(fields)))
    headers = _headers(draw, ["127.0.0.1:{port}"] * 3 + ["localhost:{port}", "evil.example:{port}", ""])
    return LiveRequest("POST" if kind == "stop" else "GET", _raw(path + "?" + query, draw), headers, token)


@st.composite
def live_requests(draw) -> LiveRequest:
    """Any request: paths of the server's own segments and of any text, any query string, in
    any of the forms a request line takes, with any method, Host and Origin."""
    segments = draw(st.lists(st.sampled_from(_PARTS) | st.text(max_size=8), max_size=4))
    path = "/" + "/".join(_encoded(p, draw) for p in segments)
    fields = draw(st.lists(st.tuples(st.sampled_from(_NAMES) | st.text(max_size=6),
                                     st.sampled_from(_VALUES) | st.text(max_size=6)), max_size=5))
    query = "&".join(f"{_encoded(k, draw)}={_encoded(v, draw)}" for k, v in fields)
    form = draw(st.sampled_from(["path?query", "path", "query", "*", "absolute"]))
    target = {"path?query": path + "?" + query, "path": path, "query": query, "*": "*",
              "absolute": "http://evil.example" + path + "?" + query}[form]
    hosts = ["127.0.0.1:{port}", "localhost:{port}", "evil.example:{port}", "evil.example", "127.0.0.1", "[::1]:{port}", ""]
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT"]))
    return LiveRequest(method, _raw(target, draw), _headers(draw, hosts), draw(st.booleans()))


def send_raw(port: int, method: str, target: bytes, headers: list[tuple[str, str]]) -> int | None:
    """Send one request as bytes; the status of the answer, None when the server closed the
    connection without one. Reads to the end: the server closes after handling the request."""
    head = method.encode() + b" " + target + b" HTTP/1.1\r\n"
    head += b"".join(f"{k}: {v.replace('{port}', str(port))}\r\n".encode("utf-8", "surrogatepass") for k, v in headers)
    head += b"Connection: close\r\nContent-Length: 0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = answer.split(b"\r\n", 1)[0].split(b" ")
    return int(status[1]) if len(status) > 1 and status[1].isdigit() else None


def live_request(server, request: LiveRequest) -> int | None:
    """The property: an answer below 500 (501: a method the server does not serve), nothing on
    stderr, and the page's next poll answered. Returns the status."""
    server.token = LIVE_TOKEN if request.token else None
    poll = "/state?since.main=0" + (f"&token={LIVE_TOKEN}" if request.token else "")
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            status = send_raw(server.port, request.method, request.target, request.headers)
            after = send_raw(server.port, "GET", poll.encode(), [("Host", "127.0.0.1:{port}")])
    finally:
        server.token = None
    # A request line of two words is HTTP/0.9 to http.server (an empty target, or one of
    # whitespace only, such as \x1c): its answer is the body alone, without a status line.
    http09 = len((request.method.encode() + b" " + request.target + b" HTTP/1.1").decode("iso-8859-1").split()) == 2
    assert status is not None or http09, "no answer"
    assert status is None or status < 500 or (status == 501 and request.method not in ("GET", "POST")), status
    assert err.getvalue() == "", err.getvalue()
    assert after == 200, after
    return status
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
