"""IF-Block condition DSL, hand-written: tokenizer, precedence climbing, AST, evaluator.

Same precedence levels and coercions as the original's pyparsing grammar, without its crashes and
silent misparses (chains evaluate left to right, trailing text is an error). Grammar and the
differences from the original: docs/design.md."""
from __future__ import annotations

import operator
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

from autoexec.conf.errors import AutoexecError

__all__ = ["ConditionError", "evaluate", "parse", "Literal", "Var", "Unary", "Binary"]

Lookup = Callable[[str], "str | None"]


class ConditionError(AutoexecError, ValueError):
    """Syntax or evaluation error; the message is one line naming the expression and position."""

    def __init__(self, expr: str, pos: int, detail: str, kind: str = "syntax") -> None:
        self.expr, self.pos, self.detail = expr, pos, detail
        flat = expr.replace("\r", " ").replace("\n", " ")
        super().__init__(f"Condition {kind} error at position {pos} in [{flat}]: {detail}")


@dataclass(frozen=True)
class Literal:
    value: Any  # int, float or str (quoted strings may still interpolate variables)


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str
    operand: "Node"
    pos: int


@dataclass(frozen=True)
class Binary:
    op: str
    left: "Node"
    right: "Node"
    pos: int


Node = Union[Literal, Var, Unary, Binary]

BINARY_OPS = ("==", "!=", ">=", "<=", "=", "<", ">", "+", "-", "*", "/")
WORD_BINARY = ("contains", "startswith")
FILE_OPS = ("-f", "-d", "-e", "-l")

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+\.\d*|\.\d+|\d+)
  | (?P<str>"[^"]*"|'[^']*')
  | (?P<var>\$\{\s*\w+\s*\}|\$\w+)
  | (?P<fileop>-[fdel](?!\w))
  | (?P<op>==|!=|>=|<=|=|<|>|\+|-|\*|/)
  | (?P<paren>[()])
  | (?P<word>\w+)
""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str  # num str var fileop op paren kw end
    text: str
    pos: int


def _tokenize(expr: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            if expr[pos] in "\"'":
                raise ConditionError(expr, pos, "unterminated string")
            raise ConditionError(expr, pos, f"unexpected character {expr[pos]!r}")
        kind = m.lastgroup or ""
        text = m.group()
        if kind == "word":
            low = text.lower()
            if low not in ("and", "or", "not", *WORD_BINARY):
                raise ConditionError(expr, pos, f"unexpected word {text!r}: variable must start with \"$\", "
                                                f"string must quote by single or double quote")
            kind, text = "kw", low
        if kind != "ws":
            tokens.append(_Tok(kind, text, pos))
        pos = m.end()
    tokens.append(_Tok("end", "", len(expr)))
    return tokens


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.toks = _tokenize(expr)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, tok: _Tok, wanted: str) -> ConditionError:
        found = "end of expression" if tok.kind == "end" else repr(tok.text)
        return ConditionError(self.expr, tok.pos, f"expected {wanted}, found {found}")

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise ConditionError(self.expr, 0, "empty condition")
        node = self.or_expr()
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "an operator or end of expression")
        return node

    def _chain(self, keyword: str, sub: Callable[[], Node]) -> Node:
        node = sub()
        while self.peek().kind == "kw" and self.peek().text == keyword:
            tok = self.take()
            node = Binary(keyword, node, sub(), tok.pos)
        return node

    def or_expr(self) -> Node:
        return self._chain("or", self.and_expr)

    def and_expr(self) -> Node:
        return self._chain("and", self.not_expr)

    def not_expr(self) -> Node:
        tok = self.peek()
        if tok.kind == "kw" and tok.text == "not":
            self.take()
            return Unary("not", self.not_expr(), tok.pos)
        return self.file_expr()

    def file_expr(self) -> Node:
        tok = self.peek()
        if tok.kind == "fileop":
            self.take()
            return Unary(tok.text, self.file_expr(), tok.pos)
        return self.binary()

    def binary(self) -> Node:
        node = self.operand()
        while True:
            tok = self.peek()
            if not (tok.kind == "op" or (tok.kind == "kw" and tok.text in WORD_BINARY)):
                return node
            self.take()
            node = Binary(tok.text, node, self.operand(), tok.pos)

    def operand(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            return Literal(_number(tok.text))
        if tok.kind == "op" and tok.text == "-" and self.peek().kind == "num":
            return Literal(-_number(self.take().text))
        if tok.kind == "str":
            return Literal(tok.text[1:-1])
        if tok.kind == "var":
            return Var(tok.text.strip("${} \t"))
        if tok.kind == "paren" and tok.text == "(":
            node = self.or_expr()
            close = self.take()
            if close.kind != "paren" or close.text != ")":
                raise self.fail(close, "')'")
            return node
        raise self.fail(tok, "a number, a quoted string, a $variable or '('")


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


@lru_cache(maxsize=512)
def parse(expr: str) -> Node:
    """AST of ``expr`` (cached: the same condition is evaluated once per node)."""
    return _Parser(expr).parse()


_WHOLE_VAR = re.compile(r"^\$\{\s*(\w+)\s*\}$|^\$(\w+)$")
_INTERP = re.compile(r"\$\{\s*(\w+)\s*\}|\$(\w+)")
_DIGITS = re.compile(r"^\d+$")
_DOTTED = re.compile(r"^[\d.]+$")


def _coerce(text: str) -> Any:
    if _DIGITS.match(text):
        return int(text)
    if _DOTTED.match(text):
        try:
            return float(text)
        except ValueError:
            return text  # "1.2.3" stays a version-like string
    return text


def _string_value(text: str, lookup: Lookup) -> Any:
    whole = _WHOLE_VAR.match(text)
    if whole:
        value = lookup(whole.group(1) or whole.group(2))
        return text if value is None else _coerce(str(value))

    def sub(m: re.Match[str]) -> str:
        value = lookup(m.group(1) or m.group(2))
        return m.group(0) if value is None else str(value)

    return _INTERP.sub(sub, text) if "$" in text else text


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e16 else str(value)
    return str(value)


def _numeric(value: str) -> int | float | None:
    try:
        return int(value) if _DIGITS.match(value) else float(value)
    except ValueError:
        return None


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
    "<": operator.lt, ">": operator.gt, "+": operator.add, "-": operator.sub, "*": operator.mul,
    "/": operator.truediv,
    "contains": lambda a, b: _text(b) in _text(a),
    "startswith": lambda a, b: _text(a).startswith(_text(b)),
}
_FILE_TESTS: dict[str, Callable[[str], bool]] = {
    "-f": os.path.isfile, "-d": os.path.isdir, "-e": os.path.exists, "-l": os.path.islink,
}


def _binary(op: str, left: Any, right: Any) -> Any:
    if op == "and":
        return left and right
    if op == "or":
        return left or right
    if isinstance(left, str):
        right = _text(right)
    elif isinstance(right, str):
        number = _numeric(right)
        if number is None:
            left = _text(left)  # number vs. non-numeric text: compare as text
        else:
            right = number
    return _ARITH[op](left, right)


def _eval(node: Node, lookup: Lookup, expr: str) -> Any:
    if isinstance(node, Var):
        return _string_value(f"${node.name}", lookup)
    if isinstance(node, Literal):
        return _string_value(node.value, lookup) if isinstance(node.value, str) else node.value
    if isinstance(node, Unary):
        value = _eval(node.operand, lookup, expr)
        return (not value) if node.op == "not" else _FILE_TESTS[node.op](_text(value))
    left, right = _eval(node.left, lookup, expr), _eval(node.right, lookup, expr)
    try:
        return _binary(node.op, left, right)
    except (TypeError, ZeroDivisionError, ValueError) as exc:
        raise ConditionError(expr, node.pos, f"cannot apply {node.op!r} to {left!r} and {right!r}: {exc}",
                             "evaluation") from None


def evaluate(expr: str, lookup: Lookup) -> bool:
    """Parse (cached) and evaluate ``expr``; variables come from ``lookup`` (None = undefined)."""
    return bool(_eval(parse(expr), lookup, expr))
