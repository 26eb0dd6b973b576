"""Whether a class registered as a component keeps the contract of its kind, checked when its
plugin loads (`stylekit.plugins.registry`): a mistake that would otherwise surface in the
middle of a run, far from its cause, is reported at once with the class and what to do.

The checks are static and cheap (no instance is built, nothing runs): the class has the
methods its kind requires (the contract's abstract methods, and a backbone's `__init__`);
every contract method it defines accepts what stylekit passes, as the contract's own
signature gives it, and stays a classmethod where stylekit calls it on the class; its `name`
is one a recipe can write; and the class attributes that a missing comma turns into a string
are not strings. What only running can tell (the layers a backbone really produces) is
`stylekit.plugins.probe`'s.
"""

from __future__ import annotations

import inspect
import re

from pydantic import BaseModel

from stylekit.contract.components import Component, LossTerm
from stylekit.contract.kinds import KINDS

#: How stylekit builds each kind: `cls(params, weights)` for a backbone, and so on.
CONSTRUCTED_WITH = {"backbone": ("params", "weights"), "loss": ("params", "layers"),
                    "optimizer": ("params",), "scheduler": ("params",), "flow": ("params",)}

#: Helpers the contract offers a plugin's own code; stylekit never calls them, so an
#: override may take whatever its plugin passes.
HELPERS = frozenset({"weighted_sum", "configured_alike"})

#: What a recipe writes as `name = "..."` and a command line as `--set loss[0].name=...`.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

#: Class attributes holding a tuple of names, where `("conv4_4")`, its comma forgotten, is a
#: string that stylekit would read letter by letter.
NAME_TUPLES = {"default_layers": "layer names", "weight_choices": "weight names"}


def breaches(cls, kind: str) -> list[str]:
    """What `cls`, registered as a `kind`, gets wrong about the contract, one sentence each
    (empty when nothing). A sentence starts with the class (`loss class Edges ...`) and ends
    with what to do; the registry prefixes the plugin and its package."""
    base = KINDS[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        return [f"registered {cls!r} as a {kind}, but it is not a subclass of stylekit.contract.{base.__name__}"]
    what = f"{kind} class {_shown(cls.__qualname__)}"
    found = []
    name = getattr(cls, "name", None)
    if name is None:
        found.append(f'{what} has no name - set name = "...", what a recipe writes to choose it')
    elif not (isinstance(name, str) and NAME.fullmatch(name)):
        found.append(f"{what}: name {name!r} is not a name a recipe can write - use a string of letters, digits, "
                     "'_' and '-', starting with a letter")
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel)):
        found.append(f"{what}: Params is not a pydantic model - subclass stylekit.contract.Params")
    return found + _method_breaches(cls, kind, what) + _attribute_breaches(cls, what)


def _method_breaches(cls: type, kind: str, what: str) -> list[str]:
    contract = _contract_methods(cls)
    lacking: list[str] = []
    found: list[str] = []
    arguments = CONSTRUCTED_WITH[kind]
    init_owner = next(k for k in cls.__mro__ if "__init__" in vars(k))
    if not issubclass(init_owner, Component):  # nn.Module's or object's: it cannot take the params
        lacking.append(f"__init__({', '.join(arguments)})")
    else:
        rejected = _rejects(vars(init_owner)["__init__"], arguments)
        if rejected:
            found.append(f"{what}: stylekit builds it as {_shown(cls.__qualname__)}({', '.join(arguments)}), "
                         f"which {rejected} does not accept - take those arguments")
    order = {name: index for index, name in enumerate(contract)}  # the contract's order, then a plugin's own
    for name in sorted(cls.__abstractmethods__, key=lambda n: (order.get(n, len(order)), n)):
        lacking.append(_call_text(name, _declared(cls, name), with_kind=True))
    if lacking:
        listed = lacking[0] if len(lacking) == 1 else ", ".join(lacking[:-1]) + " and " + lacking[-1]
        found.insert(0, f"{what} lacks {listed} - define {'it' if len(lacking) == 1 else 'them'}")
    for name, expected in contract.items():
        if name in cls.__abstractmethods__ or _declaring(cls, name).__module__.startswith("stylekit.contract."):
            continue  # missing (reported above), or the contract's own
        breach = _call_breach(cls, name, expected)
        if breach:
            found.append(f"{what}: {breach}")
    return found


def _call_breach(cls: type, name: str, expected) -> str | None:
    """Why stylekit cannot call `cls`'s `name` as the contract's `expected` says, or None."""
    call = _call_text(name, expected)
    raw = inspect.getattr_static(cls, name)
    if not callable(getattr(cls, name)):
        return f"{name} is {raw!r}, not a method - define {call}"
    if _function(raw) is None:
        return None  # a callable object of the plugin's own: its calling convention is its business
    if isinstance(expected, classmethod) and not isinstance(raw, (classmethod, staticmethod)):
        return (f"{call} must be a classmethod (stylekit calls it on the class, before building one) - "
                "decorate it with @classmethod")
    rejected = _rejects(raw, _arguments(expected))
    return f"stylekit calls {call}, which {rejected} does not accept - take those arguments" if rejected else None


def _rejects(raw, arguments: tuple[str, ...]) -> str | None:
    """`Class.method(signature)` when the method `raw` (a class's attribute) cannot be called
    with `arguments` (after self or cls, unless a staticmethod); None when it can, or when
    its signature cannot be read."""
    function = _function(raw)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    given = len(arguments) + (0 if isinstance(raw, staticmethod) else 1)
    try:
        signature.bind(*[None] * given)  # stylekit passes them by position
    except TypeError:
        plain = signature.replace(parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
                                  return_annotation=signature.empty)
        return f"{_shown(function.__qualname__)}{plain}"
    return None


def _attribute_breaches(cls: type, what: str) -> list[str]:
    found = []
    for attribute, holds in NAME_TUPLES.items():
        value = getattr(cls, attribute, ())
        if isinstance(value, str):
            found.append(f"{what}: {attribute} is the string {value!r}, not a tuple of {holds} - write ({value!r},)")
    if issubclass(cls, LossTerm):
        images = cls.target_images
        allowed = LossTerm.target_images  # the default: every image there is
        unknown = [images] if isinstance(images, str) else sorted(set(images) - allowed, key=str)
        if unknown:
            found.append(f"{what}: target_images holds {', '.join(repr(u) for u in unknown)} - use "
                         f"{' and/or '.join(repr(a) for a in sorted(allowed))}")
    return found


def _contract_methods(cls: type) -> dict:
    """Method name -> its declaration in the contract (the raw class attribute), for every
    method of the contract classes above `cls` that stylekit calls, in declaration order;
    a contract subclass's (SequentialBackbone's `features`) stands for its base's."""
    methods = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("stylekit.contract."):
            for name, raw in vars(klass).items():
                if not name.startswith("_") and name not in HELPERS and _function(raw) is not None:
                    methods[name] = raw
    return methods


def _function(raw):
    """The function behind a class attribute: a plain function, classmethod or staticmethod."""
    if isinstance(raw, (classmethod, staticmethod)):
        return raw.__func__
    return raw if inspect.isfunction(raw) else None


def _arguments(raw) -> tuple[str, ...]:
    """The arguments stylekit passes to the contract method `raw`: its required positional
    parameters after self or cls."""
    parameters = list(inspect.signature(_function(raw)).parameters.values())
    if not isinstance(raw, staticmethod):
        parameters = parameters[1:]
    return tuple(p.name for p in parameters
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)


def _call_text(name: str, raw, with_kind: bool = False) -> str:
    text = f"{name}({', '.join(_arguments(raw))})" if _function(raw) is not None else f"{name}()"
    return f"the classmethod {text}" if with_kind and isinstance(raw, classmethod) else text


def _declaring(cls: type, name: str) -> type:
    return next(k for k in cls.__mro__ if name in vars(k))


def _declared(cls: type, name: str):
    return vars(_declaring(cls, name))[name]


def _shown(qualname: str) -> str:
    """A qualified name without the `<locals>` of a class defined in a function."""
    return qualname.rpartition("<locals>.")[2]
