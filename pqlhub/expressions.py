r"""The expression language segment rules are written in: parsed safely, compiled once.

An expression reads profile values by name and combines them with Python-like
operators, for example ``account.api_calls >= 500 and plan in ('free', 'trial')``.
Its text comes from recipes, so it never reaches ``eval``: a small tokenizer and a
recursive-descent parser build a syntax tree, which is type-checked where types are
known and then compiled once into nested closures that run for every profile.

The language:

- Literals: numbers (``3``, ``1.5``, ``1e3``, ``1_000``), strings in single or
  double quotes (escapes ``\\``, ``\'``, ``\"``, ``\n``, ``\t``), ``true``,
  ``false`` and ``null`` (also ``True``, ``False``, ``None``), lists ``('a', 'b')``
  or ``[1, 2]``, and durations: a number followed by ``s``, ``m`` (minutes), ``h``,
  ``d`` or ``w``, like ``30d``.
- Names: ``plan``, ``account.api_calls`` (a dotted path is one name). Names may not
  contain ``__``, and reserved words are not names.
- Operators, loosest first: ``or``; ``and``; ``not``; the comparisons ``==``,
  ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``, ``is null`` and
  ``is not null``, chained as in Python (``0 < x <= 5``); ``+`` and ``-``; ``*``,
  ``/`` and ``%``; unary ``-``. Parentheses group. ``in`` looks for a value in a
  list, or for a string inside a string.
- Functions: ``now()``, ``date(text)``, ``days_since(t)``, ``days_until(t)``,
  ``lower(s)``, ``upper(s)``, ``trim(s)``, ``len(x)``, ``contains(x, item)``,
  ``startswith(s, prefix)``, ``endswith(s, suffix)``, ``domain(email)``,
  ``coalesce(a, b, ...)``, ``abs(x)``, ``min(a, b, ...)``, ``max(a, b, ...)`` and
  ``round(x, digits)``, plus any the caller adds.

Null and missing values:

- A name missing from the profile is ``null``.
- Any comparison with a null operand is false, ``!=`` and ``not in`` included: when
  ``x`` is missing, both ``x == 5`` and ``x != 5`` are false. Test for missing
  values with ``x is null`` and ``x is not null``.
- ``and``, ``or`` and ``not`` see only true and false. Null counts as false (as do
  ``0``, ``''`` and empty lists), so ``not (x > 5)`` is TRUE when ``x`` is missing;
  write ``x <= 5`` to leave missing values out.
- Arithmetic with null gives null, and so does a function given a null argument,
  except ``coalesce``, which returns its first argument that is not null.
- A rule matches a profile only when its value is true (or, for a value that is not
  a boolean, truthy).

Types are numbers (integers and floats mix; booleans are not numbers), strings,
booleans, datetimes (a datetime without a time zone is taken as UTC), durations and
lists. Where types are known before a run (literals, function results, and the
types the caller declares for names), a mismatch is an `ExpressionError` naming the
column. During a run, values of the wrong type never raise: values of different
types are never equal, ordering comparisons that have no answer are false, and
arithmetic or functions that have no answer (dividing by zero included) give null.
Text is not a datetime: ``date('2026-01-01')`` makes one.

Python beyond this is rejected with an error that names it: attribute access and
method calls, subscripts, lambdas, assignment, comprehensions, ``if``/``else``,
``**`` and bitwise operators. So is nesting deeper than 32 levels of parentheses
or 64 levels of operations, which keeps hostile text from exhausting the stack.
"""

from __future__ import annotations

import inspect
import keyword
import math
import operator
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, cast, get_args

from pqlhub.connectors import CompiledRule, Condition
from pqlhub.errors import ExpressionError

__all__ = ["Expression", "NameResolver", "ValueType", "compile_expression"]

NameResolver = Callable[[str], Callable[[Mapping[str, Any]], Any]]
"""Turns a name into a function that reads that name's value from a profile."""

ValueType = Literal["number", "string", "boolean", "datetime", "duration", "list"]
"""The types of value an expression works with."""

_Type = Literal["number", "string", "boolean", "datetime", "duration", "list", "null"]
_Profile = Mapping[str, Any]
_Run = Callable[[_Profile], Any]
_Check = Callable[[_Profile], bool]
_Test = Callable[[Any, Any], bool]
_Operation = Callable[[Any, Any], Any]
_Clock = Callable[[], datetime]

_EMPTY_PROFILE: _Profile = MappingProxyType({})
_MAX_NESTING = 32
_MAX_DEPTH = 64
_SECONDS_PER_DAY = 86400.0
_ROUND_DIGITS = 350


# ---------------------------------------------------------------------------- tokens


class _Token(NamedTuple):
    """One token of an expression, with its place in the text (0-based offsets)."""

    kind: Literal["number", "duration", "string", "name", "keyword", "op", "end"]
    text: str
    value: Any
    start: int
    end: int

    @property
    def column(self) -> int:
        """The token's 1-based column."""
        return self.start + 1


_KEYWORDS = {
    "and": "and",
    "or": "or",
    "not": "not",
    "in": "in",
    "is": "is",
    "true": "true",
    "True": "true",
    "false": "false",
    "False": "false",
    "null": "null",
    "None": "null",
}
_FORBIDDEN_WORDS = {
    "lambda": "Lambdas are not allowed.",
    "if": "Conditional expressions ('if' ... 'else') are not allowed.",
    "else": "Conditional expressions ('if' ... 'else') are not allowed.",
    "for": "Comprehensions and loops are not allowed.",
    "while": "Comprehensions and loops are not allowed.",
    "import": "Imports are not allowed.",
    "from": "Imports are not allowed.",
}
_PYTHON_KEYWORDS = frozenset(keyword.kwlist) - frozenset(_KEYWORDS)
_OPERATORS = frozenset(
    {"==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "[", "]"}
    | {",", "."}
)
_ASSIGNMENT = "Assignment is not allowed; use '==' to compare."
_BITWISE = "Bitwise operators are not allowed."
_REJECTED_OPERATORS = {
    "**": "The power operator '**' is not allowed.",
    "//": "Floor division '//' is not allowed; use round(a / b) instead.",
    ":=": _ASSIGNMENT,
    "=": _ASSIGNMENT,
    "<<": _BITWISE,
    ">>": _BITWISE,
    "&": _BITWISE,
    "|": _BITWISE,
    "^": _BITWISE,
    "~": _BITWISE,
    "!": "Unexpected character '!'; write 'not' to negate and '!=' to compare.",
    "{": "Dictionaries and sets are not allowed.",
    "}": "Dictionaries and sets are not allowed.",
}
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


def _tokenize(text: str) -> list[_Token]:
    """Split an expression into tokens, ending with an `end` token.

    Raises:
        ExpressionError: At the first character that starts no valid token.
    """
    tokens = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            tokens.append(_Token("end", "", None, position, position))
            return tokens
        token = _read_token(text, position)
        tokens.append(token)
        position = token.end


def _read_token(text: str, start: int) -> _Token:
    """Read the token that starts at `start`."""
    char = text[start]
    if "0" <= char <= "9":
        return _read_number(text, start)
    if char in "'\"":
        return _read_string(text, start)
    if _is_name_start_at(text, start):
        return _read_word(text, start)
    return _read_operator(text, start)


def _is_digit_at(text: str, position: int) -> bool:
    return position < len(text) and "0" <= text[position] <= "9"


def _is_name_start_at(text: str, position: int) -> bool:
    return position < len(text) and (text[position].isalpha() or text[position] == "_")


def _is_word_at(text: str, position: int) -> bool:
    return position < len(text) and (text[position].isalnum() or text[position] == "_")


def _skip_digits(text: str, position: int) -> int:
    while _is_digit_at(text, position) or text.startswith("_", position):
        position += 1
    return position


def _read_number(text: str, start: int) -> _Token:
    """Read a number (`12`, `1_000`, `1.5`, `1e3`) or a duration (`30d`)."""
    end = _skip_digits(text, start)
    if text.startswith(".", end) and _is_digit_at(text, end + 1):
        end = _skip_digits(text, end + 1)
    if end < len(text) and text[end] in "eE":
        sign = 2 if text[end + 1 : end + 2] in ("+", "-") else 1
        if _is_digit_at(text, end + sign):
            end = _skip_digits(text, end + sign)
    literal = text[start:end]
    number = _number_value(text, literal, start)
    unit = text[end : end + 1]
    if unit and unit in _DURATION_SECONDS and not _is_word_at(text, end + 1):
        return _duration_token(text, number, start, end + 1)
    if _is_word_at(text, end):
        word_end = end
        while _is_word_at(text, word_end):
            word_end += 1
        raise ExpressionError(
            text,
            start + 1,
            f"Cannot read '{text[start:word_end]}' as a number or a duration; a "
            "duration is a number and one of s, m, h, d or w, like 30d.",
        )
    return _Token("number", literal, number, start, end)


def _number_value(text: str, literal: str, start: int) -> int | float:
    """Convert a number's text, which may still be malformed (`1__0`)."""
    try:
        if any(char in literal for char in ".eE"):
            return float(literal)
        return int(literal)
    except ValueError:
        raise ExpressionError(
            text, start + 1, f"Cannot read '{literal}' as a number."
        ) from None


def _duration_token(text: str, number: float, start: int, end: int) -> _Token:
    """Make a duration token from its number and the unit at `end - 1`."""
    seconds = number * _DURATION_SECONDS[text[end - 1]]
    try:
        duration = timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise ExpressionError(
            text, start + 1, f"The duration '{text[start:end]}' is too long."
        ) from None
    return _Token("duration", text[start:end], duration, start, end)


def _read_string(text: str, start: int) -> _Token:
    """Read a quoted string, resolving its backslash escapes."""
    quote = text[start]
    chars: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == quote:
            end = position + 1
            return _Token("string", text[start:end], "".join(chars), start, end)
        if char == "\\" and position + 1 < len(text):
            chars.append(_escape(text, position))
            position += 2
            continue
        chars.append(char)
        position += 1
    raise ExpressionError(text, start + 1, "Unterminated string starting here.")


def _escape(text: str, position: int) -> str:
    """Return the character the escape at `position` (a backslash) stands for."""
    char = text[position + 1]
    if char not in _ESCAPES:
        raise ExpressionError(
            text,
            position + 1,
            f"Unknown escape '\\{char}' in a string; the escapes are "
            "\\\\, \\', \\\", \\n and \\t.",
        )
    return _ESCAPES[char]


def _read_word(text: str, start: int) -> _Token:
    """Read a name (dots join its parts) or a keyword."""
    end = start
    while _is_word_at(text, end):
        end += 1
    while text.startswith(".", end) and _is_name_start_at(text, end + 1):
        end += 1
        while _is_word_at(text, end):
            end += 1
    word = text[start:end]
    head = word.partition(".")[0]
    if "__" in word:
        raise ExpressionError(text, start + 1, "Names may not contain '__'.")
    if head in _FORBIDDEN_WORDS or head in _PYTHON_KEYWORDS:
        raise ExpressionError(text, start + 1, _forbidden_word_reason(head))
    if head not in _KEYWORDS:
        return _Token("name", word, word, start, end)
    if head != word:
        raise ExpressionError(
            text, start + 1, f"A name cannot start with the reserved word '{head}'."
        )
    return _Token("keyword", word, _KEYWORDS[word], start, end)


def _forbidden_word_reason(word: str) -> str:
    """Say why a Python keyword that the language does not have is rejected."""
    return _FORBIDDEN_WORDS.get(
        word, f"The reserved word '{word}' is not allowed in an expression."
    )


def _read_operator(text: str, start: int) -> _Token:
    """Read an operator or punctuation, preferring two characters to one."""
    for size in (2, 1):
        symbol = text[start : start + size]
        if len(symbol) < size:
            continue
        if symbol in _REJECTED_OPERATORS:
            raise ExpressionError(text, start + 1, _REJECTED_OPERATORS[symbol])
        if symbol in _OPERATORS:
            return _Token("op", symbol, symbol, start, start + size)
    raise ExpressionError(text, start + 1, f"Unexpected character {text[start]!r}.")


def _is(token: _Token, value: str) -> bool:
    """Return whether a token is the operator or keyword `value`."""
    return token.kind in ("op", "keyword") and token.value == value


def _describe(token: _Token) -> str:
    """Name a token for an error message."""
    if token.kind == "end":
        return "the end of the expression"
    if token.kind == "string":
        return f"the string {token.text}"
    return f"'{token.text}'"


# ----------------------------------------------------------------------- syntax tree


@dataclass(frozen=True, kw_only=True)
class _Node:
    """A node of the syntax tree.

    Attributes:
        start: The 0-based offset where the node's text starts.
        end: The offset just after its text.
        column: The 1-based column that errors about the node point at (the
            operator, for an operation).
        depth: How many levels of nodes this one holds, itself included.
    """

    start: int
    end: int
    column: int
    depth: int = field(init=False, default=1)

    def __post_init__(self) -> None:
        depth = 1 + max((child.depth for child in self.children()), default=0)
        object.__setattr__(self, "depth", depth)

    def children(self) -> tuple[_Node, ...]:
        """Return the node's direct children, in the order they were written."""
        return ()


@dataclass(frozen=True, kw_only=True)
class _Literal(_Node):
    value: Any
    value_type: _Type


@dataclass(frozen=True, kw_only=True)
class _Name(_Node):
    name: str


@dataclass(frozen=True, kw_only=True)
class _List(_Node):
    items: tuple[_Node, ...]

    def children(self) -> tuple[_Node, ...]:
        return self.items


@dataclass(frozen=True, kw_only=True)
class _Unary(_Node):
    op: str
    operand: _Node

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, kw_only=True)
class _Not(_Node):
    operand: _Node

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, kw_only=True)
class _Binary(_Node):
    op: str
    left: _Node
    right: _Node

    def children(self) -> tuple[_Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, kw_only=True)
class _Compare(_Node):
    """A comparison or a chain of them: `ops[i]` sits between operands i and i+1."""

    operands: tuple[_Node, ...]
    ops: tuple[tuple[str, int], ...]

    def children(self) -> tuple[_Node, ...]:
        return self.operands


@dataclass(frozen=True, kw_only=True)
class _IsNull(_Node):
    operand: _Node
    negated: bool

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, kw_only=True)
class _BoolOp(_Node):
    op: Literal["and", "or"]
    operands: tuple[_Node, ...]

    def children(self) -> tuple[_Node, ...]:
        return self.operands


@dataclass(frozen=True, kw_only=True)
class _Call(_Node):
    name: str
    args: tuple[_Node, ...]

    def children(self) -> tuple[_Node, ...]:
        return self.args


def _names_in(node: _Node) -> Iterator[str]:
    """Yield the names a node reads, in the order they were written."""
    if isinstance(node, _Name):
        yield node.name
    for child in node.children():
        yield from _names_in(child)


# ---------------------------------------------------------------------------- parser

_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_CHAINED_IS_NULL = (
    "Other comparisons cannot be chained with 'is null'; use parentheses."
)
_LITERAL_WORDS: dict[str, tuple[Any, _Type]] = {
    "true": (True, "boolean"),
    "false": (False, "boolean"),
    "null": (None, "null"),
}
_LITERAL_TYPES: dict[str, _Type] = {
    "number": "number",
    "duration": "duration",
    "string": "string",
}


class _Parser:
    """A recursive-descent parser, one method per precedence level."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens = _tokenize(text)
        self._index = 0
        self._nesting = 0

    def parse(self) -> _Node:
        """Parse the whole text into one tree.

        Raises:
            ExpressionError: At the first token that does not fit.
        """
        if self._peek().kind == "end":
            raise ExpressionError(self._text, 1, "The expression is empty.")
        node = self._parse_or()
        token = self._peek()
        if token.kind == "op" and token.value in (")", "]"):
            raise self._error(token, f"Unmatched '{token.value}'.")
        if token.kind != "end":
            raise self._error(
                token,
                "Expected an operator or the end of the expression, found "
                f"{_describe(token)}.",
            )
        return node

    # ------------------------------------------------------------------ helpers

    def _error(self, token: _Token, reason: str) -> ExpressionError:
        return ExpressionError(self._text, token.column, reason)

    def _peek(self, offset: int = 0) -> _Token:
        return self._tokens[min(self._index + offset, len(self._tokens) - 1)]

    def _advance(self) -> _Token:
        token = self._peek()
        self._index = min(self._index + 1, len(self._tokens) - 1)
        return token

    def _last_end(self) -> int:
        return self._tokens[self._index - 1].end

    def _at(self, value: str) -> bool:
        return _is(self._peek(), value)

    def _accept(self, *values: str) -> _Token | None:
        token = self._peek()
        if token.kind in ("op", "keyword") and token.value in values:
            return self._advance()
        return None

    @contextmanager
    def _nested(self, token: _Token) -> Iterator[None]:
        """Count one level of nesting, so hostile input cannot exhaust the stack."""
        self._nesting += 1
        if self._nesting > _MAX_NESTING:
            raise self._error(
                token, f"The expression nests more than {_MAX_NESTING} levels deep."
            )
        yield
        self._nesting -= 1

    def _checked(self, node: _Node) -> _Node:
        if node.depth > _MAX_DEPTH:
            raise ExpressionError(
                self._text,
                node.column,
                f"The expression is more than {_MAX_DEPTH} operations deep; "
                "split it into simpler rules.",
            )
        return node

    # ------------------------------------------------------------------- levels

    def _parse_or(self) -> _Node:
        return self._parse_bool("or", self._parse_and)

    def _parse_and(self) -> _Node:
        return self._parse_bool("and", self._parse_not)

    def _parse_bool(
        self, op: Literal["and", "or"], parse_operand: Callable[[], _Node]
    ) -> _Node:
        start = self._peek().start
        operands = [parse_operand()]
        column = self._peek().column
        while self._accept(op):
            operands.append(parse_operand())
        if len(operands) == 1:
            return operands[0]
        return self._checked(
            _BoolOp(
                start=start,
                end=self._last_end(),
                column=column,
                op=op,
                operands=tuple(operands),
            )
        )

    def _parse_not(self) -> _Node:
        token = self._accept("not")
        if token is None:
            return self._parse_comparison()
        with self._nested(token):
            operand = self._parse_not()
        return self._checked(
            _Not(
                start=token.start,
                end=self._last_end(),
                column=token.column,
                operand=operand,
            )
        )

    def _parse_comparison(self) -> _Node:
        start = self._peek().start
        operands = [self._parse_sum()]
        if self._at("is"):
            return self._parse_is_null(start, operands[0])
        ops = []
        while (op := self._comparison_operator()) is not None:
            ops.append(op)
            operands.append(self._parse_sum())
        if self._at("is"):
            raise self._error(self._peek(), _CHAINED_IS_NULL)
        if not ops:
            return operands[0]
        return self._checked(
            _Compare(
                start=start,
                end=self._last_end(),
                column=ops[0][1],
                operands=tuple(operands),
                ops=tuple(ops),
            )
        )

    def _comparison_operator(self) -> tuple[str, int] | None:
        """Consume a comparison operator and return it with its column, if any."""
        token = self._peek()
        if token.kind == "op" and token.value in _COMPARISONS:
            self._advance()
            return token.value, token.column
        if token.kind != "keyword":
            return None
        if token.value == "in":
            self._advance()
            return "in", token.column
        if token.value == "not" and _is(self._peek(1), "in"):
            self._advance()
            self._advance()
            return "not in", token.column
        return None

    def _parse_is_null(self, start: int, operand: _Node) -> _Node:
        token = self._advance()
        negated = self._accept("not") is not None
        if not self._at("null"):
            raise self._error(
                self._peek(),
                "Only 'is null' and 'is not null' are allowed; compare values "
                "with '==' or '!='.",
            )
        self._advance()
        following = self._peek()
        if self._at("is") or self._comparison_operator() is not None:
            raise self._error(following, _CHAINED_IS_NULL)
        return self._checked(
            _IsNull(
                start=start,
                end=self._last_end(),
                column=token.column,
                operand=operand,
                negated=negated,
            )
        )

    def _parse_sum(self) -> _Node:
        return self._parse_arithmetic(("+", "-"), self._parse_term)

    def _parse_term(self) -> _Node:
        return self._parse_arithmetic(("*", "/", "%"), self._parse_unary)

    def _parse_arithmetic(
        self, ops: tuple[str, ...], parse_operand: Callable[[], _Node]
    ) -> _Node:
        start = self._peek().start
        node = parse_operand()
        while (token := self._accept(*ops)) is not None:
            right = parse_operand()
            node = self._checked(
                _Binary(
                    start=start,
                    end=self._last_end(),
                    column=token.column,
                    op=token.value,
                    left=node,
                    right=right,
                )
            )
        return node

    def _parse_unary(self) -> _Node:
        token = self._accept("-", "+")
        if token is None:
            return self._parse_postfix()
        with self._nested(token):
            operand = self._parse_unary()
        return self._checked(
            _Unary(
                start=token.start,
                end=self._last_end(),
                column=token.column,
                op=token.value,
                operand=operand,
            )
        )

    def _parse_postfix(self) -> _Node:
        """Parse a value, and reject the Python postfixes the language lacks."""
        node = self._parse_primary()
        token = self._peek()
        if token.kind == "op" and token.value in (".", "[", "("):
            raise self._error(token, self._postfix_reason(token.value))
        return node

    def _postfix_reason(self, symbol: str) -> str:
        if symbol == "[":
            return "Subscripts like x[0] are not allowed."
        if symbol == "(":
            return "Only functions can be called, and only by their name."
        if self._peek(1).kind != "name":
            return "Unexpected '.' after a value."
        if _is(self._peek(2), "("):
            return (
                "Method calls are not allowed; call a function by name instead, "
                "like lower(x)."
            )
        return "Attribute access on values is not allowed."

    def _parse_primary(self) -> _Node:
        token = self._peek()
        if token.kind in _LITERAL_TYPES:
            return self._literal(token.value, _LITERAL_TYPES[token.kind])
        if token.kind == "keyword" and token.value in _LITERAL_WORDS:
            return self._literal(*_LITERAL_WORDS[token.value])
        if token.kind == "name":
            return self._parse_name_or_call()
        if self._at("("):
            return self._parse_parentheses()
        if self._at("["):
            return self._parse_list()
        previous = self._tokens[self._index - 1] if self._index else None
        after = f" after '{previous.text}'" if previous else ""
        raise self._error(token, f"Expected a value{after}, found {_describe(token)}.")

    def _literal(self, value: Any, value_type: _Type) -> _Node:
        token = self._advance()
        return _Literal(
            start=token.start,
            end=token.end,
            column=token.column,
            value=value,
            value_type=value_type,
        )

    def _parse_name_or_call(self) -> _Node:
        token = self._advance()
        if not self._at("("):
            return _Name(
                start=token.start, end=token.end, column=token.column, name=token.value
            )
        opening = self._advance()
        with self._nested(opening):
            args, _ = self._parse_items(")", opening)
        return self._checked(
            _Call(
                start=token.start,
                end=self._last_end(),
                column=token.column,
                name=token.value,
                args=tuple(args),
            )
        )

    def _parse_parentheses(self) -> _Node:
        """Parse `(x)`, which only groups, or a tuple: `()`, `(x,)`, `(x, y)`."""
        opening = self._advance()
        with self._nested(opening):
            items, comma = self._parse_items(")", opening)
        if len(items) == 1 and not comma:
            return items[0]
        return self._list(opening, items)

    def _parse_list(self) -> _Node:
        opening = self._advance()
        with self._nested(opening):
            items, _ = self._parse_items("]", opening)
        return self._list(opening, items)

    def _list(self, opening: _Token, items: list[_Node]) -> _Node:
        return self._checked(
            _List(
                start=opening.start,
                end=self._last_end(),
                column=opening.column,
                items=tuple(items),
            )
        )

    def _parse_items(self, close: str, opening: _Token) -> tuple[list[_Node], bool]:
        """Parse comma-separated expressions up to `close`.

        Returns:
            The items, and whether any comma was seen.
        """
        items = []
        comma = False
        while not self._at(close):
            items.append(self._parse_or())
            if not self._accept(","):
                break
            comma = True
        token = self._peek()
        if token.kind == "end":
            raise self._error(opening, f"The '{opening.text}' here is never closed.")
        if not self._accept(close):
            raise self._error(
                token, f"Expected ',' or '{close}', found {_describe(token)}."
            )
        return items, comma


# ---------------------------------------------------------------------------- values

_NUMBER_CLASSES = frozenset({int, float})
_ORDERED = frozenset({"number", "string", "datetime", "duration"})
_KIND_OF_CLASS: dict[type, ValueType] = {
    int: "number",
    float: "number",
    str: "string",
    bool: "boolean",
    datetime: "datetime",
    date: "datetime",
    timedelta: "duration",
    list: "list",
    tuple: "list",
}


def _kind(value: Any) -> ValueType | None:
    """Return the type of a run-time value, or None for null and foreign values."""
    kind = _KIND_OF_CLASS.get(type(value))
    if kind is not None or value is None:
        return kind
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, date):
        return "datetime"
    if isinstance(value, timedelta):
        return "duration"
    if isinstance(value, list | tuple):
        return "list"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _aware(moment: date) -> datetime:
    """Return a date or datetime as an aware datetime, taking naive ones as UTC."""
    if isinstance(moment, datetime):
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def _as_datetime(value: Any) -> datetime | None:
    """Return a value as an aware datetime, or None when it is not a date."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return _aware(value) if isinstance(value, date) else None


def _truthy(value: Any) -> bool:
    """Return whether a value counts as true: null is false, like 0 and ''."""
    if value is True or value is False:
        return bool(value)
    if value is None:
        return False
    try:
        return bool(value)
    except Exception:  # A foreign value whose truth is undefined (an array).
        return False


def _equals(left: Any, right: Any) -> bool:
    """Compare two values of the same type; other pairs, and nulls, are unequal."""
    kind = _kind(left)
    if kind is None or kind != _kind(right):
        return False
    if kind == "datetime":
        return _order_datetimes(operator.eq, left, right)
    if kind == "list":
        return len(left) == len(right) and all(map(_equals, left, right))
    return bool(left == right)


def _differs(left: Any, right: Any) -> bool:
    return left is not None and right is not None and not _equals(left, right)


def _order_datetimes(test: _Test, left: date, right: date) -> bool:
    try:
        return test(_aware(left), _aware(right))
    except OverflowError:  # Offsets pushed a moment out of datetime's range.
        return False


def _ordering(test: _Test) -> _Test:
    """Make an ordering comparison that is false for values without an order."""

    def compare(left: Any, right: Any) -> bool:
        kind = _kind(left)
        if kind not in _ORDERED or _kind(right) != kind:
            return False
        if kind == "datetime":
            return _order_datetimes(test, left, right)
        return test(left, right)

    return compare


def _contained(item: Any, container: Any) -> bool:
    if item is None:
        return False
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, list | tuple):
        return any(_equals(item, member) for member in container)
    return False


def _not_contained(item: Any, container: Any) -> bool:
    if item is None:
        return False
    if isinstance(container, str):
        return isinstance(item, str) and item not in container
    if isinstance(container, list | tuple):
        return not any(_equals(item, member) for member in container)
    return False


_ORDER_TESTS: dict[str, _Test] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_COMPARATORS: dict[str, _Test] = {
    "==": _equals,
    "!=": _differs,
    "in": _contained,
    "not in": _not_contained,
    **{op: _ordering(test) for op, test in _ORDER_TESTS.items()},
}
_MIRRORED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


# ------------------------------------------------------------------------ arithmetic


def _divide(left: Any, right: Any) -> Any:
    return left / right if right else None


def _remainder(left: Any, right: Any) -> Any:
    return left % right if right else None


def _concatenate(left: Sequence[Any], right: Sequence[Any]) -> tuple[Any, ...]:
    return (*left, *right)


def _later(moment: date, duration: timedelta) -> datetime:
    return _aware(moment) + duration


def _later_by(duration: timedelta, moment: date) -> datetime:
    return _aware(moment) + duration


def _earlier(moment: date, duration: timedelta) -> datetime:
    return _aware(moment) - duration


def _elapsed(later: date, earlier: date) -> timedelta:
    return _aware(later) - _aware(earlier)


_ARITHMETIC: dict[str, dict[tuple[str | None, str | None], tuple[_Type, _Operation]]]
_ARITHMETIC = {
    "+": {
        ("number", "number"): ("number", operator.add),
        ("string", "string"): ("string", operator.add),
        ("list", "list"): ("list", _concatenate),
        ("duration", "duration"): ("duration", operator.add),
        ("datetime", "duration"): ("datetime", _later),
        ("duration", "datetime"): ("datetime", _later_by),
    },
    "-": {
        ("number", "number"): ("number", operator.sub),
        ("duration", "duration"): ("duration", operator.sub),
        ("datetime", "duration"): ("datetime", _earlier),
        ("datetime", "datetime"): ("duration", _elapsed),
    },
    "*": {
        ("number", "number"): ("number", operator.mul),
        ("duration", "number"): ("duration", operator.mul),
        ("number", "duration"): ("duration", operator.mul),
    },
    "/": {
        ("number", "number"): ("number", _divide),
        ("duration", "number"): ("duration", _divide),
        ("duration", "duration"): ("number", _divide),
    },
    "%": {("number", "number"): ("number", _remainder)},
}
_OPERATIONS = {
    op: {kinds: operation for kinds, (_, operation) in table.items()}
    for op, table in _ARITHMETIC.items()
}


def _negate(value: Any) -> Any:
    if not (_is_number(value) or isinstance(value, timedelta)):
        return None
    try:
        return -value
    except OverflowError:
        return None


def _positive(value: Any) -> Any:
    return value if _is_number(value) or isinstance(value, timedelta) else None


# ------------------------------------------------------------------------- functions


@dataclass(frozen=True)
class _Function:
    """A function expressions can call.

    Attributes:
        impl: Computes the result from argument values (after the clock, when
            `uses_clock`). It returns None for values of the wrong type.
        arity: The fewest arguments it takes, and the most (None for any number).
        accepts: The types each argument may have, the last entry standing for
            the rest; an empty set or tuple accepts anything.
        returns: The result type, when it is fixed.
        returns_argument_type: The result has the type its arguments share.
        uniform: All arguments must have one type.
        pure: The result depends on the arguments only, so constant calls fold.
        uses_clock: `impl` takes the run's clock as its first argument.
        takes_nulls: `impl` is called even when an argument is null.
    """

    impl: Callable[..., Any]
    arity: tuple[int, int | None]
    accepts: tuple[frozenset[str], ...] = ()
    returns: _Type | None = None
    returns_argument_type: bool = False
    _: KW_ONLY
    uniform: bool = False
    pure: bool = True
    uses_clock: bool = False
    takes_nulls: bool = False


def _now(clock: _Clock) -> datetime | None:
    return _as_datetime(clock())


def _date(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    moment = _as_datetime(value)
    try:
        return None if moment is None else moment.astimezone(UTC)
    except OverflowError:
        return None


def _days_between(start: Any, end: Any) -> float | None:
    first, last = _as_datetime(start), _as_datetime(end)
    if first is None or last is None:
        return None
    try:
        return (last - first).total_seconds() / _SECONDS_PER_DAY
    except OverflowError:
        return None


def _days_since(clock: _Clock, moment: Any) -> float | None:
    return _days_between(moment, clock())


def _days_until(clock: _Clock, moment: Any) -> float | None:
    return _days_between(clock(), moment)


def _lower(text: Any) -> str | None:
    return text.lower() if isinstance(text, str) else None


def _upper(text: Any) -> str | None:
    return text.upper() if isinstance(text, str) else None


def _trim(text: Any) -> str | None:
    return text.strip() if isinstance(text, str) else None


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


def _contains(container: Any, item: Any) -> bool | None:
    if isinstance(container, str):
        return item in container if isinstance(item, str) else None
    if isinstance(container, list | tuple):
        return any(_equals(item, member) for member in container)
    return None


def _startswith(text: Any, prefix: Any) -> bool | None:
    if isinstance(text, str) and isinstance(prefix, str):
        return text.startswith(prefix)
    return None


def _endswith(text: Any, suffix: Any) -> bool | None:
    if isinstance(text, str) and isinstance(suffix, str):
        return text.endswith(suffix)
    return None


def _domain(email: Any) -> str | None:
    if not isinstance(email, str) or "@" not in email:
        return None
    return email.rpartition("@")[2].strip().lower() or None


def _coalesce(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _absolute(value: Any) -> Any:
    if not (_is_number(value) or isinstance(value, timedelta)):
        return None
    try:
        return abs(value)
    except OverflowError:
        return None


def _orderable(values: Sequence[Any]) -> list[Any] | None:
    """Return values that share one ordered type, ready to compare, or None."""
    kind = _kind(values[0])
    if kind not in _ORDERED or any(_kind(value) != kind for value in values):
        return None
    return [_aware(value) for value in values] if kind == "datetime" else list(values)


def _least(*values: Any) -> Any:
    items = _orderable(values)
    try:
        return None if items is None else min(items)
    except OverflowError:
        return None


def _greatest(*values: Any) -> Any:
    items = _orderable(values)
    try:
        return None if items is None else max(items)
    except OverflowError:
        return None


def _round(value: Any, digits: Any = 0) -> Any:
    if not _is_number(value) or type(digits) is not int:
        return None
    # Rounding an int to -n digits computes 10**n; beyond 350 digits a float is
    # unchanged or zero anyway, so the clamp only keeps hostile input cheap.
    digits = max(-_ROUND_DIGITS, min(_ROUND_DIGITS, digits))
    try:
        return round(value, digits) if digits else round(value)
    except (OverflowError, ValueError):
        return None


_ANY: frozenset[str] = frozenset()
_NUMBER = frozenset({"number"})
_STRING = frozenset({"string"})
_DATETIME = frozenset({"datetime"})
_TEXT_OR_LIST = frozenset({"string", "list"})
_NUMBER_OR_DURATION = frozenset({"number", "duration"})
_FUNCTIONS: dict[str, _Function] = {
    "now": _Function(_now, (0, 0), (), "datetime", pure=False, uses_clock=True),
    "date": _Function(_date, (1, 1), (frozenset({"string", "datetime"}),), "datetime"),
    "days_since": _Function(
        _days_since, (1, 1), (_DATETIME,), "number", pure=False, uses_clock=True
    ),
    "days_until": _Function(
        _days_until, (1, 1), (_DATETIME,), "number", pure=False, uses_clock=True
    ),
    "lower": _Function(_lower, (1, 1), (_STRING,), "string"),
    "upper": _Function(_upper, (1, 1), (_STRING,), "string"),
    "trim": _Function(_trim, (1, 1), (_STRING,), "string"),
    "len": _Function(_length, (1, 1), (_TEXT_OR_LIST,), "number"),
    "contains": _Function(_contains, (2, 2), (_TEXT_OR_LIST, _ANY), "boolean"),
    "startswith": _Function(_startswith, (2, 2), (_STRING,), "boolean"),
    "endswith": _Function(_endswith, (2, 2), (_STRING,), "boolean"),
    "domain": _Function(_domain, (1, 1), (_STRING,), "string"),
    "coalesce": _Function(
        _coalesce, (1, None), returns_argument_type=True, uniform=True, takes_nulls=True
    ),
    "abs": _Function(_absolute, (1, 1), (_NUMBER_OR_DURATION,), None, True),
    "min": _Function(_least, (1, None), (_ORDERED,), None, True, uniform=True),
    "max": _Function(_greatest, (1, None), (_ORDERED,), None, True, uniform=True),
    "round": _Function(_round, (1, 2), (_NUMBER,), "number"),
}


def _caller_function(impl: Callable[..., Any]) -> _Function:
    """Describe a function the caller added, taking its arity from its signature."""
    try:
        parameters = list(inspect.signature(impl).parameters.values())
    except (TypeError, ValueError):
        return _Function(impl, (0, None), pure=False)
    positional = [
        parameter
        for parameter in parameters
        if parameter.kind
        in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    ]
    required = sum(
        1 for parameter in positional if parameter.default is parameter.empty
    )
    variadic = any(
        parameter.kind is parameter.VAR_POSITIONAL for parameter in parameters
    )
    most = None if variadic else len(positional)
    return _Function(impl, (required, most), pure=False)


def _arity(low: int, high: int | None) -> str:
    """Say how many arguments a function takes: `1 argument`, `1 to 2 arguments`."""
    noun = "argument" if (high or low) == 1 else "arguments"
    if high is None:
        return f"at least {low} {noun}"
    if high == low:
        return f"{low} {noun}" if low else "no arguments"
    return f"{low} to {high} {noun}"


# -------------------------------------------------------------------------- compiler

_ARTICLES: dict[str, str] = {
    "number": "a number",
    "string": "a string",
    "boolean": "a boolean",
    "datetime": "a datetime",
    "duration": "a duration",
    "list": "a list",
    "null": "null",
}
_TYPE_ORDER = ("number", "string", "boolean", "datetime", "duration", "list", "null")


def _a(value_type: str) -> str:
    return _ARTICLES[value_type]


def _plural(value_type: str) -> str:
    return value_type + "s"


def _joined(words: Sequence[str], conjunction: str) -> str:
    if len(words) == 1:
        return words[0]
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _in_order(value_types: Collection[str]) -> list[str]:
    return [name for name in _TYPE_ORDER if name in value_types]


class _Compiled(NamedTuple):
    """A compiled node: how to run it, and what is known about it before a run.

    Attributes:
        run: Computes the node's value from a profile; it never raises.
        type: The value's type, when known before a run.
        boolean: `run` always returns True or False.
        constant: The value is the same for every profile.
        value: That value, when `constant`.
        timed: The value depends on the run's clock and nothing else, so `run`
            computes it once per moment the clock returns.
    """

    run: _Run
    type: _Type | None = None
    boolean: bool = False
    constant: bool = False
    value: Any = None
    timed: bool = False


def _constant(value: Any, value_type: _Type | None) -> _Compiled:
    def run(_profile: _Profile) -> Any:
        return value

    return _Compiled(run, value_type, isinstance(value, bool), True, value)


def _truth(compiled: _Compiled) -> _Check:
    """Return a check of whether the node's value counts as true."""
    if compiled.boolean:
        return compiled.run
    inner = compiled.run

    def check(profile: _Profile) -> bool:
        return _truthy(inner(profile))

    return check


class _Compiler:
    """Type-checks syntax trees and turns them into closures.

    Attributes:
        getters: The value getter of every name compiled so far, by name.
        node_types: The known type of every node compiled, by node id.
        constants: The value of every constant node, by node id.
    """

    def __init__(
        self,
        text: str,
        resolve: NameResolver,
        types: Mapping[str, ValueType],
        clock: _Clock,
        functions: Mapping[str, _Function],
    ) -> None:
        self.text = text
        self.clock = clock
        self.functions = functions
        self._resolve = resolve
        self._types = types
        self.getters: dict[str, _Run] = {}
        self.node_types: dict[int, _Type | None] = {}
        self.constants: dict[int, Any] = {}

    def compile(self, node: _Node) -> _Compiled:
        """Compile one node and, through it, its children.

        Raises:
            ExpressionError: When the node's types do not fit together.
        """
        compiled = self._compile(node)
        self.node_types[id(node)] = compiled.type
        if compiled.constant:
            self.constants[id(node)] = compiled.value
        return compiled

    def _compile(self, node: _Node) -> _Compiled:
        match node:
            case _Literal():
                return _constant(node.value, node.value_type)
            case _Name():
                return self._name(node)
            case _List():
                return self._list(node)
            case _Unary():
                return self._unary(node)
            case _Not():
                return self._not(node)
            case _Binary():
                return self._binary(node)
            case _Compare():
                return self._compare(node)
            case _IsNull():
                return self._is_null(node)
            case _BoolOp():
                return self._bool_op(node)
            case _Call():
                return self._call(node)
        raise TypeError(f"There is no compiler for {type(node).__name__}.")

    def _error(self, column: int, reason: str) -> ExpressionError:
        return ExpressionError(self.text, column, reason)

    def _culprit(self, node: _Node, value_type: _Type) -> str:
        """Name an operand in a message by its text and its type: `plan (a string)`."""
        written = self.text[node.start : node.end]
        if len(written) > 40:
            written = written[:37] + "..."
        return f"{written} ({_a(value_type)})"

    def _folded(
        self,
        compiled: _Compiled,
        parts: Sequence[_Compiled],
        reads_clock: bool = False,
    ) -> _Compiled:
        """Compute a node that reads no name only as often as its inputs change.

        A node of constant parts is computed once, now. A node that reads the
        clock (`now() - 30d`) is computed once per moment the clock returns, which
        with a run's fixed as-of time means once per run.
        """
        if not reads_clock and all(part.constant for part in parts):
            return _constant(compiled.run(_EMPTY_PROFILE), compiled.type)
        if not all(part.constant or part.timed for part in parts):
            return compiled
        if reads_clock or any(part.timed for part in parts):
            run = _per_moment(self.clock, compiled.run)
            return compiled._replace(run=run, timed=True)
        return compiled

    # -------------------------------------------------------------------- values

    def _name(self, node: _Name) -> _Compiled:
        getter = self.getters.get(node.name)
        if getter is None:
            getter = self.getters[node.name] = self._resolve(node.name)
        return _Compiled(getter, self._types.get(node.name))

    def _list(self, node: _List) -> _Compiled:
        items = [self.compile(item) for item in node.items]
        if all(item.constant for item in items):
            return _constant(tuple(item.value for item in items), "list")
        runs = tuple(item.run for item in items)

        def run(profile: _Profile) -> tuple[Any, ...]:
            return tuple([item(profile) for item in runs])

        return _Compiled(run, "list")

    def _unary(self, node: _Unary) -> _Compiled:
        operand = self.compile(node.operand)
        if operand.type is not None and operand.type not in ("number", "duration"):
            raise self._error(
                node.column, f"Cannot apply unary '{node.op}' to {_a(operand.type)}."
            )
        apply = _negate if node.op == "-" else _positive
        inner = operand.run

        def run(profile: _Profile) -> Any:
            return apply(inner(profile))

        return self._folded(_Compiled(run, operand.type), [operand])

    def _binary(self, node: _Binary) -> _Compiled:
        left, right = self.compile(node.left), self.compile(node.right)
        result_type = self._arithmetic_type(node, left.type, right.type)
        run = _arithmetic_run(_OPERATIONS[node.op], left.run, right.run)
        return self._folded(_Compiled(run, result_type), [left, right])

    def _arithmetic_type(
        self, node: _Binary, left: _Type | None, right: _Type | None
    ) -> _Type | None:
        if left == "null" or right == "null":
            raise self._error(
                node.column, f"Arithmetic with null always gives null ('{node.op}')."
            )
        if left is None or right is None:
            return None
        entry = _ARITHMETIC[node.op].get((left, right))
        if entry is None:
            first = self._culprit(node.left, left)
            second = self._culprit(node.right, right)
            raise self._error(
                node.column, f"Cannot apply '{node.op}' to {first} and {second}."
            )
        return entry[0]

    # --------------------------------------------------------------- conditions

    def _not(self, node: _Not) -> _Compiled:
        operand = self.compile(node.operand)
        check = _truth(operand)

        def run(profile: _Profile) -> bool:
            return not check(profile)

        return self._folded(_Compiled(run, "boolean", boolean=True), [operand])

    def _bool_op(self, node: _BoolOp) -> _Compiled:
        operands = [self.compile(operand) for operand in node.operands]
        checks = [_truth(operand) for operand in operands]
        run = _all_of(checks) if node.op == "and" else _any_of(checks)
        return self._folded(_Compiled(run, "boolean", boolean=True), operands)

    def _is_null(self, node: _IsNull) -> _Compiled:
        operand = self.compile(node.operand)
        inner = operand.run

        def is_null(profile: _Profile) -> bool:
            return inner(profile) is None

        def is_not_null(profile: _Profile) -> bool:
            return inner(profile) is not None

        run = is_not_null if node.negated else is_null
        return self._folded(_Compiled(run, "boolean", boolean=True), [operand])

    def _compare(self, node: _Compare) -> _Compiled:
        operands = [self.compile(operand) for operand in node.operands]
        for index, (op, column) in enumerate(node.ops):
            pair = node.operands[index : index + 2]
            self._check_comparison(op, column, pair, operands[index : index + 2])
        if len(operands) == 2:
            run = _comparison_run(node.ops[0][0], operands[0], operands[1])
        else:
            run = _chain_run([op for op, _ in node.ops], operands)
        return self._folded(_Compiled(run, "boolean", boolean=True), operands)

    def _check_comparison(
        self,
        op: str,
        column: int,
        nodes: Sequence[_Node],
        operands: Sequence[_Compiled],
    ) -> None:
        left, right = operands[0].type, operands[1].type
        if left == "null" or right == "null":
            raise self._error(
                column,
                "Comparisons with null are always false; test for missing values "
                "with 'is null' or 'is not null'.",
            )
        if op in ("in", "not in"):
            self._check_membership(op, column, left, nodes[1], right)
            return
        if left is None or right is None:
            return
        if left != right:
            hint = self._date_hint(nodes, left, right)
            raise self._error(
                column,
                f"Cannot compare {self._culprit(nodes[0], left)} with "
                f"{self._culprit(nodes[1], right)}.{hint}",
            )
        if op in _ORDER_TESTS and left not in _ORDERED:
            raise self._error(
                column,
                f"Cannot order {_plural(left)} with '{op}'; only numbers, strings, "
                "datetimes and durations have an order.",
            )

    def _date_hint(self, nodes: Sequence[_Node], left: str, right: str) -> str:
        """Suggest date('...') when a datetime meets text."""
        if {left, right} != {"datetime", "string"}:
            return ""
        text_node = nodes[0] if left == "string" else nodes[1]
        if isinstance(text_node, _Literal):
            literal = self.text[text_node.start : text_node.end]
            return f" Write date({literal}) to make a datetime of the text."
        return " Make a datetime of the text with date(...)."

    def _check_membership(
        self,
        op: str,
        column: int,
        item: _Type | None,
        container: _Node,
        kind: _Type | None,
    ) -> None:
        if kind is not None and kind not in ("list", "string"):
            raise self._error(
                column,
                f"The right side of '{op}' must be a list or a string, found "
                f"{_a(kind)}.",
            )
        if kind == "string" and item is not None and item != "string":
            raise self._error(
                column,
                f"Only a string can be looked for in a string, found {_a(item)}.",
            )
        if item is None or not isinstance(container, _List) or not container.items:
            return
        members = {self.node_types[id(member)] or "" for member in container.items}
        if members.isdisjoint({"", "null", item}):
            held = _joined([_plural(name) for name in _in_order(members)], "and")
            raise self._error(
                column, f"Cannot look for {_a(item)} in a list of {held}."
            )

    # ---------------------------------------------------------------- functions

    def _call(self, node: _Call) -> _Compiled:
        function = self._function(node)
        args = [self.compile(arg) for arg in node.args]
        arg_types = self._check_arguments(node, function, args)
        impl = function.impl
        if function.uses_clock:
            impl = partial(impl, self.clock)
        run = _call_run(impl, [arg.run for arg in args], function.takes_nulls)
        compiled = _Compiled(run, _result_type(function, arg_types))
        if not (function.pure or function.uses_clock):
            return compiled
        folded = self._folded(compiled, args, reads_clock=function.uses_clock)
        if function is _FUNCTIONS["date"] and folded.value is None and folded.constant:
            argument = node.args[0]
            written = self.text[argument.start : argument.end]
            raise self._error(
                argument.start + 1,
                f"Function date() cannot read {written} as an ISO date or datetime.",
            )
        return folded

    def _function(self, node: _Call) -> _Function:
        """Find the function a call names, and check how many arguments it got."""
        function = self.functions.get(node.name)
        if function is None:
            owner, _, method = node.name.rpartition(".")
            if owner and method in self.functions:
                # `plan.lower()` reads as a method call on the field `plan`.
                raise self._error(
                    node.column,
                    f"Method calls are not allowed; write {method}({owner}) "
                    f"instead of {node.name}().",
                )
            known = ", ".join(sorted(self.functions))
            raise self._error(
                node.column,
                f"Unknown function '{node.name}'; known functions are: {known}.",
            )
        count = len(node.args)
        low, high = function.arity
        if count < low or (high is not None and count > high):
            raise self._error(
                node.column,
                f"Function {node.name}() takes {_arity(low, high)}, found {count}.",
            )
        return function

    def _check_arguments(
        self, node: _Call, function: _Function, args: Sequence[_Compiled]
    ) -> list[_Type | None]:
        types = [arg.type for arg in args]
        for index, arg_type in enumerate(types):
            accepted = _accepted(function, index)
            if not accepted or arg_type in (None, "null") or arg_type in accepted:
                continue
            expected = _joined([_a(name) for name in _in_order(accepted)], "or")
            raise self._error(
                node.args[index].start + 1,
                f"Function {node.name}() expects {expected} as argument {index + 1}, "
                f"found {_a(arg_type)}.",
            )
        if function.uniform:
            self._check_uniform(node, types)
        return types

    def _check_uniform(self, node: _Call, types: Sequence[_Type | None]) -> None:
        known = [
            (arg_type, arg)
            for arg_type, arg in zip(types, node.args, strict=True)
            if arg_type is not None and arg_type != "null"
        ]
        for arg_type, arg in known[1:]:
            if arg_type != known[0][0]:
                raise self._error(
                    arg.start + 1,
                    f"Function {node.name}() expects arguments of one type, found "
                    f"{_a(known[0][0])} and {_a(arg_type)}.",
                )


def _accepted(function: _Function, index: int) -> frozenset[str]:
    """Return the types a function accepts as its argument at `index`."""
    if not function.accepts:
        return _ANY
    return function.accepts[min(index, len(function.accepts) - 1)]


def _result_type(
    function: _Function, arg_types: Sequence[_Type | None]
) -> _Type | None:
    if not function.returns_argument_type:
        return function.returns
    known = {arg_type for arg_type in arg_types if arg_type != "null"}
    if len(known) != 1:
        return None
    return known.pop()


# -------------------------------------------------------------------------- closures


def _all_of(checks: Sequence[_Check]) -> _Check:
    """Join checks with `and`, as a balanced tree so long chains stay shallow."""
    if len(checks) == 1:
        return checks[0]
    middle = len(checks) // 2
    first, second = _all_of(checks[:middle]), _all_of(checks[middle:])

    def both(profile: _Profile) -> bool:
        return first(profile) and second(profile)

    return both


def _any_of(checks: Sequence[_Check]) -> _Check:
    """Join checks with `or`, as a balanced tree so long chains stay shallow."""
    if len(checks) == 1:
        return checks[0]
    middle = len(checks) // 2
    first, second = _any_of(checks[:middle]), _any_of(checks[middle:])

    def either(profile: _Profile) -> bool:
        return first(profile) or second(profile)

    return either


def _arithmetic_run(
    operations: Mapping[tuple[str | None, str | None], _Operation],
    left: _Run,
    right: _Run,
) -> _Run:
    """Run an arithmetic operation, choosing its meaning by the values' types."""

    def run(profile: _Profile) -> Any:
        first, second = left(profile), right(profile)
        operation = operations.get((_kind(first), _kind(second)))
        if operation is None:
            return None
        try:
            return operation(first, second)
        except (ArithmeticError, ValueError):  # Overflow, or NaN in a duration.
            return None

    return run


def _per_moment(clock: _Clock, compute: _Run) -> _Run:
    """Remember a value computed from the clock alone until the clock moves on."""
    unset = object()
    memo: list[tuple[Any, Any]] = [(unset, None)]

    def run(profile: _Profile) -> Any:
        moment = clock()
        seen, value = memo[0]
        if moment is seen:
            return value
        value = compute(profile)
        memo[0] = (moment, value)  # One assignment, so threads never see a mix.
        return value

    return run


def _comparator(op: str, known: _Type | None) -> _Test:
    """Return the comparison for `op`, specialised when a side's type is known."""
    test = _ORDER_TESTS.get(op)
    if test is not None and known == "datetime":
        return partial(_compare_datetimes, test)
    return _COMPARATORS[op]


def _compare_datetimes(test: _Test, left: Any, right: Any) -> bool:
    first, second = _as_datetime(left), _as_datetime(right)
    if first is None or second is None:
        return False
    try:
        return test(first, second)
    except OverflowError:  # Offsets pushed a moment out of datetime's range.
        return False


def _comparison_run(op: str, left: _Compiled, right: _Compiled) -> _Run:
    if right.constant:
        return _against_constant(op, left.run, right.value)
    if left.constant and op in _MIRRORED:
        return _against_constant(_MIRRORED[op], right.run, left.value)
    compare = _comparator(op, left.type or right.type)
    first, second = left.run, right.run

    def run(profile: _Profile) -> bool:
        return compare(first(profile), second(profile))

    return run


def _chain_run(ops: Sequence[str], operands: Sequence[_Compiled]) -> _Run:
    """Run `a < b <= c` as `a < b and b <= c`, reading `b` once."""
    first = operands[0].run
    steps = [
        (_comparator(op, operand.type), operand.run)
        for op, operand in zip(ops, operands[1:], strict=True)
    ]

    def run(profile: _Profile) -> bool:
        left = first(profile)
        for compare, operand in steps:
            right = operand(profile)
            if not compare(left, right):
                return False
            left = right
        return True

    return run


def _against_constant(op: str, left: _Run, constant: Any) -> _Run:
    """Specialise a comparison with a constant, the common case in rules."""
    kind = _kind(constant)
    if op in ("in", "not in"):
        return _membership_run(op == "in", left, constant)
    test = operator.eq if op == "==" else _ORDER_TESTS.get(op)
    if test is not None and kind == "number":
        return _number_test(test, left, constant)
    if test is not None and kind == "string":
        return _string_test(test, left, constant)
    compare = _comparator(op, kind)

    def run(profile: _Profile) -> bool:
        return compare(left(profile), constant)

    return run


def _number_test(test: _Test, left: _Run, constant: float) -> _Run:
    def run(profile: _Profile) -> bool:
        value = left(profile)
        return (type(value) in _NUMBER_CLASSES or _is_number(value)) and test(
            value, constant
        )

    return run


def _string_test(test: _Test, left: _Run, constant: str) -> _Run:
    def run(profile: _Profile) -> bool:
        value = left(profile)
        return isinstance(value, str) and test(value, constant)

    return run


def _membership_run(wanted: bool, left: _Run, container: Any) -> _Run:
    """Specialise `in` and `not in` with a constant list or string."""
    member = _member_test(container)
    if member is None:
        compare = _contained if wanted else _not_contained

        def run(profile: _Profile) -> bool:
            return compare(left(profile), container)

        return run

    def is_in(profile: _Profile) -> bool:
        return member(left(profile))

    def is_not_in(profile: _Profile) -> bool:
        value = left(profile)
        return value is not None and not member(value)

    return is_in if wanted else is_not_in


def _member_test(container: Any) -> Callable[[Any], bool] | None:
    """Return a fast membership test for a constant list, or None for others."""
    if not isinstance(container, tuple):
        return None
    if all(isinstance(member, str) for member in container):
        strings = frozenset(container)
        return lambda value: isinstance(value, str) and value in strings
    if all(_is_number(member) for member in container):
        numbers = frozenset(container)
        return lambda value: _is_number(value) and value in numbers
    return lambda value: any(_equals(value, member) for member in container)


def _call_run(
    impl: Callable[..., Any], args: Sequence[_Run], takes_nulls: bool
) -> _Run:
    """Call a function with its arguments' values; a null argument gives null."""
    if takes_nulls or not args:

        def call(profile: _Profile) -> Any:
            return impl(*[arg(profile) for arg in args])

        return call
    if len(args) == 1:
        (only,) = args

        def call_one(profile: _Profile) -> Any:
            value = only(profile)
            return None if value is None else impl(value)

        return call_one

    def call_many(profile: _Profile) -> Any:
        values = [arg(profile) for arg in args]
        if any(value is None for value in values):
            return None
        return impl(*values)

    return call_many


# ------------------------------------------------------------------------------- SQL


class _NoSqlError(Exception):
    """The expression uses something that has no SQL form."""


def _sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_literal(value: Any) -> str:
    """Write a constant as SQL (PostgreSQL flavoured)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, timedelta):
        return f"INTERVAL '{value.total_seconds()!r} seconds'"
    if isinstance(value, date):
        return f"TIMESTAMP WITH TIME ZONE '{_aware(value).isoformat()}'"
    if isinstance(value, tuple) and value:
        return "(" + ", ".join(_sql_literal(item) for item in value) + ")"
    raise _NoSqlError


_SQL_FUNCTIONS = {
    "lower": "LOWER",
    "upper": "UPPER",
    "trim": "TRIM",
    "abs": "ABS",
    "coalesce": "COALESCE",
    "round": "ROUND",
}


class _SqlWriter:
    """Writes a compiled tree as a SQL boolean expression with the same meaning.

    Each comparison is wrapped in COALESCE(..., FALSE) so that SQL's unknown
    becomes false, as null comparisons are here.
    """

    def __init__(self, compiler: _Compiler) -> None:
        self._compiler = compiler

    def condition(self, node: _Node) -> str:
        match node:
            case _BoolOp():
                joiner = " AND " if node.op == "and" else " OR "
                return "(" + joiner.join(map(self.condition, node.operands)) + ")"
            case _Not():
                return f"(NOT {self.condition(node.operand)})"
            case _Compare():
                return f"COALESCE({self._comparison(node)}, FALSE)"
            case _IsNull():
                check = "IS NOT NULL" if node.negated else "IS NULL"
                return f"({self.value(node.operand)} {check})"
        if self._type(node) != "boolean":
            raise _NoSqlError
        return f"COALESCE({self.value(node)}, FALSE)"

    def value(self, node: _Node) -> str:
        if id(node) in self._compiler.constants:
            return _sql_literal(self._compiler.constants[id(node)])
        match node:
            case _Name():
                return _sql_name(node.name)
            case _Unary():
                return f"({node.op}{self.value(node.operand)})"
            case _Binary():
                return self._arithmetic(node)
            case _Call():
                return self._function(node)
            case _List() if node.items:
                return "(" + ", ".join(map(self.value, node.items)) + ")"
            case _List():
                raise _NoSqlError
        return self.condition(node)

    def _type(self, node: _Node) -> _Type | None:
        return self._compiler.node_types.get(id(node))

    def _comparison(self, node: _Compare) -> str:
        parts = [
            self._pair(op, node.operands[index], node.operands[index + 1])
            for index, (op, _) in enumerate(node.ops)
        ]
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def _pair(self, op: str, left: _Node, right: _Node) -> str:
        first, second = self.value(left), self.value(right)
        if op in ("in", "not in"):
            if self._type(right) == "string":
                found = "> 0" if op == "in" else "= 0"
                return f"(POSITION({first} IN {second}) {found})"
            listed = self._compiler.constants.get(id(right), ())
            if not (isinstance(right, _List) or isinstance(listed, tuple)):
                raise _NoSqlError
            return f"({first} {op.upper()} {second})"
        sql_op = {"==": "=", "!=": "<>"}.get(op, op)
        return f"({first} {sql_op} {second})"

    def _arithmetic(self, node: _Binary) -> str:
        first, second = self.value(node.left), self.value(node.right)
        if "list" in (self._type(node.left), self._type(node.right)):
            raise _NoSqlError
        if node.op == "+" and "string" in (
            self._type(node.left),
            self._type(node.right),
        ):
            return f"({first} || {second})"
        if node.op == "/":
            return f"({first} / NULLIF({second}, 0))"
        if node.op == "%":
            return f"MOD({first}, NULLIF({second}, 0))"
        return f"({first} {node.op} {second})"

    def _function(self, node: _Call) -> str:
        if self._compiler.functions.get(node.name) is not _FUNCTIONS.get(node.name):
            raise _NoSqlError
        args = [self.value(arg) for arg in node.args]
        if node.name in _SQL_FUNCTIONS:
            return f"{_SQL_FUNCTIONS[node.name]}({', '.join(args)})"
        now = _sql_literal(_as_datetime(self._compiler.clock()))
        if node.name == "now":
            return now
        if node.name in ("days_since", "days_until"):
            later, earlier = (
                (now, args[0]) if node.name == "days_since" else (args[0], now)
            )
            return f"(EXTRACT(EPOCH FROM ({later} - {earlier})) / 86400)"
        if node.name == "len" and self._type(node.args[0]) == "string":
            return f"LENGTH({args[0]})"
        if node.name in ("startswith", "endswith", "contains"):
            return self._like(node, args[0])
        raise _NoSqlError

    def _like(self, node: _Call, subject: str) -> str:
        """Write startswith, endswith and contains on text as LIKE."""
        pattern = self._compiler.constants.get(id(node.args[1]))
        if not isinstance(pattern, str) or self._type(node.args[0]) != "string":
            raise _NoSqlError
        escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        before = "" if node.name == "startswith" else "%"
        after = "" if node.name == "endswith" else "%"
        like = _sql_literal(f"{before}{escaped}{after}")
        return f"({subject} LIKE {like} ESCAPE '\\')"


# -------------------------------------------------------------------------- public


@dataclass(frozen=True)
class _Leaf:
    """One condition of an expression's and/or/not tree, ready to explain."""

    text: str
    names: tuple[str, ...]
    check: _Check


class Expression(CompiledRule):
    """An expression compiled once, to evaluate against many profiles.

    Build one with `compile_expression`.

    Attributes:
        text: The expression as written.
        fields: Every name the expression reads.
    """

    def __init__(self, text: str, root: _Node, compiler: _Compiler) -> None:
        compiled = compiler.compile(root)
        self.text = text
        self.fields = frozenset(compiler.getters)
        self._value = compiled.run
        self._matches = _truth(compiled)
        self._root = root
        self._compiler = compiler
        self._leaves: list[_Leaf] | None = None

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def evaluate(self, profile: Mapping[str, Any]) -> Any:
        """Return the expression's value for a profile (None when it has none)."""
        return self._value(profile)

    def matches(self, profile: Mapping[str, Any]) -> bool:
        """Return whether the expression is true for a profile; null is false."""
        return self._matches(profile)

    def explain(self, profile: Mapping[str, Any]) -> list[Condition]:
        """Return each condition of the and/or/not tree, with what it read and found.

        A condition is a leaf of the tree: a comparison, a function call, a name,
        or `not` applied to one of those (the `not` is part of its text).
        """
        if self._leaves is None:
            self._leaves = [self._leaf(node) for node in _leaves(self._root)]
        getters = self._compiler.getters
        return [
            Condition(
                leaf.text,
                {name: getters[name](profile) for name in leaf.names},
                leaf.check(profile),
            )
            for leaf in self._leaves
        ]

    def to_sql(self) -> str | None:
        """Return the expression as a PostgreSQL boolean expression, if it has one.

        Names become double-quoted columns and `now()` the run's time as a
        timestamp. Returns None for what SQL cannot say the same way: lists held
        in a column, `domain`, `min`, `max`, `date` of a column and the caller's
        functions.
        """
        try:
            return _SqlWriter(self._compiler).condition(self._root)
        except (_NoSqlError, ValueError):  # ValueError: an integer too long to print.
            return None

    def _leaf(self, node: _Node) -> _Leaf:
        names = tuple(dict.fromkeys(_names_in(node)))
        check = _truth(self._compiler.compile(node))
        return _Leaf(self.text[node.start : node.end], names, check)


def _leaves(node: _Node) -> Iterator[_Node]:
    """Yield the leaves of the and/or/not tree at the top of an expression."""
    if isinstance(node, _BoolOp):
        for operand in node.operands:
            yield from _leaves(operand)
    elif isinstance(node, _Not) and isinstance(node.operand, _BoolOp | _Not):
        yield from _leaves(node.operand)
    else:
        yield node


def _read_field(name: str) -> _Run:
    """The default resolver: read the name as a key of the profile."""
    return operator.methodcaller("get", name)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _checked_types(types: Mapping[str, str] | None) -> dict[str, ValueType]:
    """Return the declared types of names, refusing types that do not exist."""
    known = get_args(ValueType)
    checked: dict[str, ValueType] = {}
    for name, value_type in (types or {}).items():
        if value_type not in known:
            raise ValueError(
                f"The type {value_type!r} given for {name!r} is not one of "
                f"{', '.join(known)}."
            )
        checked[name] = cast(ValueType, value_type)
    return checked


def compile_expression(
    text: str,
    *,
    resolve: NameResolver | None = None,
    types: Mapping[str, ValueType] | None = None,
    now: Callable[[], datetime] | None = None,
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> Expression:
    """Parse, type-check and compile an expression.

    Args:
        text: The expression, as the recipe wrote it.
        resolve: Turns each name the expression reads into a function that reads
            its value from a profile; called once per name, now. By default a
            name is looked up as a key of the profile.
        types: The types of names, where known, so that mismatches are caught
            now rather than silently false during a run.
        now: Returns the run's time (its as-of), for `now()`, `days_since` and
            `days_until`; called each time one of them is evaluated. By default,
            the current time in UTC. A naive result is taken as UTC.
        functions: Further functions expressions may call, by name (replacing a
            built-in one of the same name). They are called with the arguments'
            values, never with null (a null argument gives null without a call),
            and should not raise.

    Returns:
        The compiled expression.

    Raises:
        ExpressionError: When the text does not parse or its types do not fit.
        ValueError: When `types` names a type that does not exist.
    """
    root = _Parser(text).parse()
    table = dict(_FUNCTIONS)
    for name, impl in (functions or {}).items():
        table[name] = _caller_function(impl)
    compiler = _Compiler(
        text, resolve or _read_field, _checked_types(types), now or _utc_now, table
    )
    return Expression(text, root, compiler)
