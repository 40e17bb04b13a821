"""The one path from data to generated text: every string that comes from a spec, a tuning record or the
command line reaches a generated file through `py_literal` (a Python literal) or `comment` (a `#` line)
(`toml_string` in a pyproject.toml);
the SPEC/CONFIG blocks of kernel modules take the stricter `literal` (numbers, identifiers and tuples only).

A literal is `repr` of a str, int, bool, None or finite float: inert whatever the text holds. A comment
refuses any character that is not printable (newlines, `\\r`, `\\x0b`, `\\x0c`, NUL, `\\u2028`, `\\x85`, ...):
Python's tokenizer ends a comment at `\\r` or `\\n`, and `str.splitlines`, which editors and our own
post-processing use, splits at every one of them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


class UnsafeTextError(ValueError):
    """A string would not stay inert in generated text."""


def py_literal(value: Any) -> str:
    """A Python literal for a str, int, bool, None or finite float; anything else is refused."""
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise UnsafeTextError(f"generated code: expected a str, int, bool, None or finite float, got {value!r}")


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def literal(value: Any) -> str:
    """The literal of a validated spec or config value: int, finite float, bool, None, an identifier-like
    string, or a tuple of those (the SPEC/CONFIG blocks of kernel modules); anything else is refused."""
    if value is None or type(value) in (bool, int):
        return repr(value)
    if type(value) is float and math.isfinite(value):
        return repr(value)
    if type(value) is str and _NAME.fullmatch(value):
        return repr(value)
    if type(value) is tuple:
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    raise UnsafeTextError(f"literal: expected an int, a finite float, a bool, None, an identifier or a tuple of "
                          f"those, got {value!r}")


def comment_text(text: Any) -> str:
    """`text` as it may stand after a `#`: a str of printable characters only (space allowed)."""
    text = str(text) if isinstance(text, (int, float)) and not isinstance(text, bool) else text
    if not isinstance(text, str):
        raise UnsafeTextError(f"generated comment: expected text, got {type(text).__name__}")
    bad = next((c for c in text if not c.isprintable()), None)
    if bad is not None:
        raise UnsafeTextError(f"generated comment: refusing the control character {bad!r} in {text!r}")
    return text


def comment(text: Any) -> str:
    """One `# text` line (no newline at the end)."""
    return "# " + comment_text(text)


def toml_string(value: Any) -> str:
    """A TOML basic string for a str (a package's pyproject.toml): JSON's escaping, ASCII only, which TOML
    reads alike."""
    if not isinstance(value, str):
        raise UnsafeTextError(f"toml string: expected a str, got {value!r}")
    return json.dumps(value, ensure_ascii=True)
