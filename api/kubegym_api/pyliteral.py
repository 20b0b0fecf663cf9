"""Python-literal strings in hyperparameters, parsed and never evaluated.

rl-zoo3's tables (and the researchers who copy from them) write some hyperparameters as
Python source in a string: ``policy_kwargs: "dict(net_arch=[64, 64], activation_fn=nn.ReLU)"``,
``normalize: "{'norm_obs': True, 'norm_reward': False}"``, ``replay_buffer_class: HerReplayBuffer``.
rl-zoo3 hands those strings to ``eval``, so a YAML value could run any code in the runner
pod. This module is the one parser every such string goes through, in the operator (which
fails the run before any Job exists) and in the runner (which turns the result into objects).

The grammar is deliberately small, and everything outside it is refused with a message naming
the field:

* literals: numbers (with a sign), strings, ``True``/``False``/``None``;
* lists, tuples and dicts with literal keys, and ``dict(key=value, ...)``;
* names from :data:`SYMBOLS` (``nn.ReLU``, ``th.optim.Adam``, ``HerReplayBuffer``, ...),
  returned as :class:`Symbol` so this package needs no torch; the runner resolves them.

No call but ``dict``, no attribute access but the dotted spellings of allowed names, no
operators, subscripts, comprehensions or lambdas; the text is at most :data:`MAX_LENGTH`
characters and :data:`MAX_DEPTH` levels deep, so parsing cannot be made expensive.

A class given by its own import path (``my_package.layers:Swish``, with a colon) is a
different thing: it names code installed in the runner image, which the runner imports and
checks to be a class of the expected kind (:func:`is_import_path`). It is allowed where the
value is a class name (``activation_fn``, ``*_class``), never inside a literal string.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: Longest literal string accepted.
MAX_LENGTH = 4096
#: Deepest nesting of lists, dicts and calls accepted.
MAX_DEPTH = 16


def _spellings(module: str, qualifiers: tuple[str, ...], names: tuple[str, ...]) -> dict[str, str]:
    return {f"{q}{n}": f"{module}:{n}" for q in ("", *qualifiers) for n in names}


_TORCH_NN = ("nn.", "th.nn.", "torch.nn.")
_TORCH_OPTIM = ("optim.", "th.optim.", "torch.optim.")
_ACTIVATIONS = (
    "CELU", "ELU", "GELU", "GLU", "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh", "Identity",
    "LeakyReLU", "LogSigmoid", "Mish", "PReLU", "ReLU", "ReLU6", "RReLU", "SELU", "SiLU", "Sigmoid",
    "Softplus", "Softshrink", "Softsign", "Tanh", "Tanhshrink",
)  # fmt: skip
_OPTIMIZERS = ("Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "SGD")
_BUFFERS = ("DictReplayBuffer", "DictRolloutBuffer", "ReplayBuffer", "RolloutBuffer")
_EXTRACTORS = ("CombinedExtractor", "FlattenExtractor", "NatureCNN")

#: Every name a literal may use, as it may be spelled → ``module:attribute`` it stands for.
#: torch activations and optimizers, and the classes of stable-baselines3 and sb3-contrib that
#: hyperparameters name (buffers, feature extractors, the TF-like RMSprop). A test of the runner
#: imports each target, so the table cannot name something that does not exist.
SYMBOLS: Mapping[str, str] = {
    **_spellings("torch.nn", _TORCH_NN, _ACTIVATIONS),
    **_spellings("torch.optim", _TORCH_OPTIM, _OPTIMIZERS),
    **_spellings("stable_baselines3.common.buffers", ("stable_baselines3.common.buffers.",), _BUFFERS),
    **_spellings("stable_baselines3.common.torch_layers", ("stable_baselines3.common.torch_layers.",), _EXTRACTORS),
    **_spellings("stable_baselines3", ("stable_baselines3.", "stable_baselines3.her."), ("HerReplayBuffer",)),
    **_spellings(
        "stable_baselines3.common.sb2_compat.rmsprop_tf_like",
        ("stable_baselines3.common.sb2_compat.rmsprop_tf_like.",),
        ("RMSpropTFLike",),
    ),
    **_spellings(
        "sb3_contrib.common.recurrent.buffers",
        ("sb3_contrib.common.recurrent.buffers.",),
        ("RecurrentDictRolloutBuffer", "RecurrentRolloutBuffer"),
    ),
}

#: Packages whose classes rl-zoo3 tables name by dotted path for wrappers, callbacks and policies.
#: A dotted name is accepted there only under one of these (``os.system`` is not).
TRUSTED_PACKAGES = ("stable_baselines3.", "sb3_contrib.", "rl_zoo3.", "gymnasium.wrappers.", "minigrid.wrappers.")

#: ``module.path:Name``: a class installed in the runner image, named by its import path.
_IMPORT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Symbol:
    """An allowed name found in a literal (``nn.ReLU``); ``target`` is its ``module:attribute``."""

    name: str
    target: str


class LiteralError(ValueError):
    """A string that is not a safe literal; the message names the field and what was refused."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def is_import_path(text: str) -> bool:
    """Whether ``text`` is the ``module.path:Name`` form of a class installed in the image."""
    return bool(_IMPORT_PATH.match(text))


def symbol(name: str, field: str) -> Symbol:
    """The allowed name ``name``, or :class:`LiteralError` listing what is allowed."""
    target = SYMBOLS.get(name)
    if target is None:
        short = sorted({n for n in SYMBOLS if "." not in n})
        written = name.rsplit(".", 1)[-1]
        close = [n for n in short if n.lower() == written.lower()] or difflib.get_close_matches(written, short, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise LiteralError(
            field,
            f"name {name!r} is not allowed; {hint}a literal may name only {', '.join(short)} "
            f"(optionally as nn.X, th.nn.X, torch.nn.X, th.optim.X); give your own class as 'module:Class'",
        )
    return Symbol(name, target)


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _callee(call: ast.Call) -> str:
    """What is called, as written (shortened)."""
    text = ast.unparse(call.func)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        return f"a call to {_callee(node)}()"
    names = {
        ast.BinOp: "an arithmetic operation",
        ast.BoolOp: "a boolean operation",
        ast.Compare: "a comparison",
        ast.Subscript: "a subscript",
        ast.Lambda: "a lambda",
        ast.IfExp: "a conditional expression",
        ast.Set: "a set",
        ast.JoinedStr: "an f-string",
        ast.NamedExpr: "an assignment",
        ast.Starred: "a starred expression",
    }
    for kind, text in names.items():
        if isinstance(node, kind):
            return text
    if isinstance(node, ast.ListComp | ast.DictComp | ast.SetComp | ast.GeneratorExp):
        return "a comprehension"
    return f"a {type(node).__name__} expression"


def _refused(node: ast.expr) -> str:
    """What ``node`` is, and the calls inside it (the part that would have run)."""
    calls = sorted(
        {
            f"{_callee(n)}()"
            for n in ast.walk(node)
            if isinstance(n, ast.Call) and n is not node and not (isinstance(n.func, ast.Name) and n.func.id == "dict")
        }
    )
    inside = f" (calling {', '.join(calls)})" if calls else ""
    return f"{_describe(node)}{inside}"


def _value(node: ast.expr, field: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise LiteralError(field, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool | int | float | str) or node.value is None:
            return node.value
        raise LiteralError(field, f"{type(node.value).__name__} constants are not allowed")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = node.operand
        number = operand.value if isinstance(operand, ast.Constant) else None
        if isinstance(number, int | float) and not isinstance(number, bool):
            return -number if isinstance(node.op, ast.USub) else number
        raise LiteralError(field, "a sign is allowed only before a number")
    if isinstance(node, ast.List):
        return [_value(e, field, depth + 1) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_value(e, field, depth + 1) for e in node.elts)
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                raise LiteralError(field, "'**' unpacking is not allowed")
            k = _value(key, field, depth + 1)
            if not isinstance(k, str | int | float | bool) or isinstance(k, Symbol):
                raise LiteralError(field, "dict keys must be strings or numbers")
            out[k] = _value(value, field, depth + 1)
        return out
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if node.args:
            raise LiteralError(field, "dict() takes only keyword arguments here: dict(net_arch=[64, 64])")
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise LiteralError(field, "'**' unpacking is not allowed")
            kwargs[kw.arg] = _value(kw.value, field, depth + 1)
        return kwargs
    if isinstance(node, ast.Name | ast.Attribute):
        name = _dotted(node)
        if name is not None:
            return symbol(name, field)
    raise LiteralError(
        field,
        f"{_refused(node)} is not allowed; only literals, lists, dicts, dict(...) and allowed class "
        "names are (the string is parsed, never evaluated)",
    )


def parse_literal(text: str, field: str) -> Any:
    """The value ``text`` spells, with allowed names as :class:`Symbol`; never evaluates it.

    ``field`` names where the string came from (``spec.hyperparameters.policy_kwargs``), for
    the error message. Raises :class:`LiteralError`.
    """
    if len(text) > MAX_LENGTH:
        raise LiteralError(field, f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise LiteralError(field, f"not a Python literal: {e.msg} at column {e.offset}") from None
    except (RecursionError, MemoryError, ValueError) as e:
        raise LiteralError(field, f"not a Python literal: {type(e).__name__}") from None
    return _value(tree.body, field, 0)


def symbols_in(value: Any) -> Iterator[Symbol]:
    """Every :class:`Symbol` inside a parsed value."""
    if isinstance(value, Symbol):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from symbols_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from symbols_in(v)
