"""Source filters (``shared/specs/layouts.md`` §6) and SymStore ``000Admin`` index lines (§7).

A source takes part in a lookup only if its filters allow the (object, file type) pair; a source
that is filtered out makes no request at all. ``path_patterns`` are globs with the semantics of the
Rust ``glob`` crate as Symbolicator configures it: case-insensitive for ASCII, ``*`` and ``?`` also
match ``/``, no special leading dots, ``**`` only as a whole path component, ``[abc]`` / ``[!abc]``
classes with ranges, and no escape character. Python's ``fnmatch`` differs on several of these
(``[!``, ranges under case folding, ``**``), so patterns are translated here, once per pattern, into
regular expressions that reproduce the crate's matcher exactly.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from symbol_proxy.config import SourceFilters
    from symbol_proxy.objects import FileType, ObjectQuery

__all__ = ["InvalidGlob", "compile_glob", "is_allowed", "matches_path_patterns", "parse_index_line"]


class InvalidGlob(ValueError):
    """A ``path_patterns`` entry is not a valid glob (Symbolicator rejects such a config)."""


# --------------------------------------------------------------------------------------------------
# Glob translation

_RECURSIVE = "**"  # token marker; real tokens are regex fragments


def _class_char(char: str) -> str:
    """A character inside a regex class: escape ASCII punctuation so nothing is read as syntax
    (``]``, ``\\``, ``^``, ``-``, ``[``, and ``&&``/``||``/``~~`` that Python warns about)."""
    if char.isascii() and not char.isalnum():
        return "\\" + char
    return char


def _class(specifiers: str, negated: bool) -> str:
    """Translate the text between the brackets of ``[...]`` / ``[!...]``.

    Single characters match ignoring ASCII case. A range matches by code point and, when both ends
    are ASCII letters, also any ASCII letter whose lowercase lies between the lowercased ends —
    the crate's rule, which differs from Python's own case folding of ranges such as ``[0-Z]``.
    """
    items: list[str] = []
    i, n = 0, len(specifiers)
    while i < n:
        if i + 2 < n and specifiers[i + 1] == "-":
            start, end = specifiers[i], specifiers[i + 2]
            if start <= end:
                items.append(f"{_class_char(start)}-{_class_char(end)}")
            low_start, low_end = start.lower(), end.lower()
            if (
                start.isascii()
                and end.isascii()
                and "a" <= low_start <= "z"
                and "a" <= low_end <= "z"
                and low_start <= low_end
            ):
                items.append(f"{low_start}-{low_end}{low_start.upper()}-{low_end.upper()}")
            i += 3
        else:
            char = specifiers[i]
            items.append(_class_char(char))
            if char.isascii() and char.isalpha():
                items.append(char.swapcase())
            i += 1
    if not items:  # only reversed ranges: the class matches nothing
        return "." if negated else "(?!)"
    return f"[{'^' if negated else ''}{''.join(items)}]"


def _tokens(pattern: str) -> list[str]:
    tokens: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "?":
            tokens.append(".")
            i += 1
        elif char == "*":
            end = i
            while end < n and pattern[end] == "*":
                end += 1
            count = end - i
            if count > 2:
                raise InvalidGlob(f"{pattern!r}: wildcards are either regular `*` or recursive `**`")
            if count == 1:
                tokens.append(".*")
            else:
                if (i > 0 and pattern[i - 1] != "/") or (end < n and pattern[end] != "/"):
                    raise InvalidGlob(f"{pattern!r}: `**` must be a whole path component")
                if end < n:
                    end += 1  # the separator after `**` belongs to it
                if not tokens or tokens[-1] != _RECURSIVE:
                    tokens.append(_RECURSIVE)
            i = end
        elif char == "[":
            if i + 4 <= n and pattern[i + 1] == "!":
                close = pattern.find("]", i + 3)
                if close >= 0:
                    tokens.append(_class(pattern[i + 2 : close], True))
                    i = close + 1
                    continue
            elif i + 3 <= n and pattern[i + 1] != "!":
                close = pattern.find("]", i + 2)
                if close >= 0:
                    tokens.append(_class(pattern[i + 1 : close], False))
                    i = close + 1
                    continue
            raise InvalidGlob(f"{pattern!r}: invalid range pattern")
        else:
            if char.isascii() and char.isalpha():
                tokens.append(f"[{char.lower()}{char.upper()}]")
            else:
                tokens.append(re.escape(char))
            i += 1
    return tokens


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The glob as a regular expression to ``fullmatch`` against a path; raises ``InvalidGlob``.

    ``**`` matches nothing or anything ending in ``/`` (the crate tries the rest of the pattern only
    after a separator), or anything at all when it ends the pattern.
    """
    tokens = _tokens(pattern)
    last = len(tokens) - 1
    parts = [
        (".*" if index == last else "(?:.*/)?") if token == _RECURSIVE else token
        for index, token in enumerate(tokens)
    ]
    return re.compile("".join(parts), re.DOTALL)


@functools.lru_cache(maxsize=256)
def _compile_all(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """Compiled patterns of one filter; invalid ones are left out, so they never match."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(compile_glob(pattern))
        except InvalidGlob:
            continue
    return tuple(compiled)


def matches_path_patterns(patterns: Iterable[str], code_file: str | None, debug_file: str | None) -> bool:
    """Whether any pattern matches the whole code file or debug file path (``\\`` read as ``/``).

    An empty pattern list allows everything; an object with neither path matches no pattern.
    """
    patterns = tuple(patterns)
    if not patterns:
        return True
    subjects = [path.replace("\\", "/") for path in (code_file, debug_file) if path is not None]
    if not subjects:
        return False
    for regex in _compile_all(patterns):
        for subject in subjects:
            if regex.fullmatch(subject):
                return True
    return False


def is_allowed(filters: SourceFilters, query: ObjectQuery, filetype: FileType) -> bool:
    """Whether a source with ``filters`` is asked for ``filetype`` of ``query`` (checks in §6 order)."""
    if filters.requires_checksum and not query.debug_checksum:
        return False  # NuGet's server answers 403 without a SymbolChecksum header
    if filters.filetypes and filetype not in filters.filetypes:
        return False
    if filters.path_patterns:
        return matches_path_patterns(filters.path_patterns, query.code_file, query.debug_file)
    return True


# --------------------------------------------------------------------------------------------------
# SymStore 000Admin index


def parse_index_line(line: str) -> str | None:
    """A transaction line ``"name\\ID",…`` as the store path ``name/ID/name``; ``None`` if unparsable.

    Like upstream, only the text between the first two double quotes counts (all of the rest of the
    line when the second quote is missing), split at its first backslash; case is kept exactly,
    because index matches are case-sensitive.
    """
    start = line.find('"')
    if start < 0:
        return None
    end = line.find('"', start + 1)
    entry = line[start + 1 :] if end < 0 else line[start + 1 : end]
    name, separator, ident = entry.partition("\\")
    if not separator:
        return None
    return f"{name}/{ident}/{name}"
