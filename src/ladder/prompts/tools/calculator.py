"""``calculator``: arithmetic by parsing, never ``eval``.

The input is parsed with :mod:`ast` and the tree is walked against an allow-list: numbers,
``+ - * / // % **``, unary ``+``/``-``, parentheses, a few :mod:`math` functions and the
constants ``pi``, ``e`` and ``tau``. Anything else (names, attributes, strings, other calls,
comparisons, comprehensions ...) is refused. Results are bounded, so ``9**9**9`` is refused
instead of eating the machine.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

from ladder.prompts.tools.base import ToolError

__all__ = ["MAX_INPUT_CHARS", "MAX_INT_BITS", "Calculator", "Number", "evaluate", "format_number"]

Number = int | float

MAX_INPUT_CHARS = 500
MAX_INT_BITS = 4096  # about 1,233 decimal digits: plenty for arithmetic, cheap to compute

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def evaluate(expression: str) -> Number:
    """The value of an arithmetic ``expression``.

    Raises:
        ToolError: the input is not arithmetic, or its value would be too large.
    """
    text = expression.strip()
    if not text:
        raise ToolError("empty expression: give arithmetic such as (2 + 3) * 4")
    if len(text) > MAX_INPUT_CHARS:
        raise ToolError(f"expression longer than {MAX_INPUT_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise ToolError(f"not an arithmetic expression ({getattr(exc, 'msg', exc)})") from None
    try:
        return _check_size(_eval(tree.body))
    except ToolError:
        raise
    except RecursionError:
        raise ToolError("expression nested too deeply") from None
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ToolError(f"{type(exc).__name__}: {exc}") from None


def format_number(value: Number) -> str:
    """Ints in full; floats to 15 significant digits (so ``0.1 + 0.2`` shows ``0.3``)."""
    if isinstance(value, int):
        return str(value)
    return format(value, ".15g")


def _eval(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        # bool is an int subclass; True + True is not arithmetic anyone means.
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return node.value
        raise ToolError(f"only numbers are allowed, not {type(node.value).__name__}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.Call):
        return _call(node)
    raise ToolError(_refusal(node))


def _call(node: ast.Call) -> Number:
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
        raise ToolError(f"only these functions are allowed: {', '.join(sorted(_FUNCTIONS))}")
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise ToolError("functions take plain positional arguments only")
    args = [_eval(a) for a in node.args]
    if node.func.id == "round" and len(args) == 2 and abs(args[1]) > 100:
        raise ToolError("round: at most 100 digits")  # round(5, -10**9) computes 10**10**9
    return _FUNCTIONS[node.func.id](*args)


def _check_power(base: Number, exponent: Number) -> None:
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0:
        return
    if abs(base) > 1 and (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
        raise ToolError(f"result too large (more than {MAX_INT_BITS} bits)")


def _check_size(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(f"result too large (more than {MAX_INT_BITS} bits)")
    if isinstance(value, complex):
        raise ToolError("the result is a complex number; only real arithmetic is supported")
    return value


def _refusal(node: ast.expr) -> str:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        return "'^' is not a power here: write 2 ** 10"
    if isinstance(node, ast.Name):
        return f"unknown name {node.id!r}: only {', '.join(_CONSTANTS)} and numbers are allowed"
    return f"{type(node).__name__} is not allowed: only numbers, + - * / // % ** and parentheses"


@dataclass(frozen=True)
class Calculator:
    """The ``calculator`` tool: safe arithmetic on one expression."""

    name: str = "calculator"
    description: str = (
        "Evaluates one arithmetic expression exactly: numbers, + - * / // % **, parentheses, "
        "sqrt, exp, log, sin, cos, tan, floor, ceil, abs, round, min, max, pi, e. "
        "Input: the expression, e.g. (17 + 4) * 3 / 7"
    )

    def run(self, input: str) -> str:
        """The value of the expression, or a :class:`ToolError` saying what is not allowed."""
        return format_number(evaluate(input))
