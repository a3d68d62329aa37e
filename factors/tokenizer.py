"""Tokenizer of formula text: characters -> ``Token``s with their positions.

One tokenizer serves both dialects; the parser decides which tokens a dialect accepts
(``$close`` fields, ``^`` vs ``**``, ``&&``/``||``, ``? :``). Strings are tokenized only so
the parser can reject them with a clear message. Errors are ``FormulaError`` with the
0-based character position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from factors.errors import FormulaError

__all__ = ["Token", "tokenize"]

# Kinds: NUMBER, NAME, FIELD ($name), STRING, OP, END.
_OPERATORS = (
    "**",
    "&&",
    "||",
    "==",
    "!=",
    "<=",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "^",
    "<",
    ">",
    "&",
    "|",
    "!",
    "~",
    "?",
    ":",
    "(",
    ")",
    ",",
    "=",
    ".",
    "[",
    "]",
    "%",
    "@",
)
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")
_SPACE = re.compile(r"\s+")
_STRING = re.compile(r"""'[^']*'?|"[^"]*"?""")


@dataclass(frozen=True)
class Token:
    """A token: its ``kind``, ``text`` and 0-based ``pos`` in the formula."""

    kind: str
    text: str
    pos: int

    def describe(self) -> str:
        """How error messages name this token."""
        if self.kind == "END":
            return "end of formula"
        return f"'{self.text}'"


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an ``END`` token."""
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a string, got {type(text).__name__}")
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        m = _SPACE.match(text, i)
        if m:
            i = m.end()
            continue
        c = text[i]
        if c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUMBER.match(text, i)
            assert m is not None
            end = m.end()
            if end < n and (text[end].isalpha() or text[end] == "_"):
                raise FormulaError(
                    f"bad number '{text[i : end + 1]}' at {i}", text, i
                )  # e.g. 3x, 1e
            tokens.append(Token("NUMBER", m.group(), i))
            i = end
            continue
        if c.isalpha() or c == "_":
            m = _NAME.match(text, i)
            assert m is not None
            tokens.append(Token("NAME", m.group(), i))
            i = m.end()
            continue
        if c == "$":
            m = _FIELD.match(text, i)
            if m is None:
                raise FormulaError(f"expected a field name after '$' at {i}", text, i)
            tokens.append(Token("FIELD", m.group()[1:], i))
            i = m.end()
            continue
        if c in "'\"":
            m = _STRING.match(text, i)
            assert m is not None
            tokens.append(Token("STRING", m.group(), i))
            i = m.end()
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(Token("OP", op, i))
                i += len(op)
                break
        else:
            raise FormulaError(f"unexpected character {c!r} at {i}", text, i)
    tokens.append(Token("END", "", n))
    return tokens
