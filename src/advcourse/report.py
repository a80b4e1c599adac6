"""Putting measured numbers into the book: tables and glued values.

Numbers quoted in a chapter's prose are glued from the run (myst-nb ``glue``),
never typed; tables are rendered from the measured values as Markdown.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Sequence


class _Text(str):
    """A string whose text form has no quotes, so ``{glue:}`` shows ``12.3%``, not ``'12.3%'``."""

    def __repr__(self) -> str:
        return str(self)


# Every value glued in this kernel, by name: what prose() renders in the Colab notebooks.
GLUED: dict[str, object] = {}


def glue(name: str, value, display: bool = False):
    """Record ``value`` under ``name`` for ``{glue:}`name``` in the chapter's prose.

    Strings are glued without quotes. The value is also kept in :data:`GLUED`, so that
    :func:`prose` can show the kernel's own numbers in the Colab notebooks (and text shown
    before the value existed is updated). Outside a book build (e.g. in Colab without
    myst-nb) the value is simply recorded and returned.
    """
    value_shown = _Text(value) if isinstance(value, str) else value
    GLUED[name] = value_shown
    _update_waiting_prose(name)
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return value
    _glue(name, value_shown, display=display)
    return value


# Glue roles as myst-nb reads them: {glue:}`name`, {glue:any}`name`, {glue:text}`name:format`, {glue:md}`name`.
GLUE_ROLE = re.compile(r"\{glue:?(?P<kind>any|text|md)?\}`(?P<content>[^`]+)`")
# The order in which myst-nb's HTML builder picks a glued value's MIME type.
_INLINE_PRIORITY = ("text/html", "image/svg+xml", "image/png", "image/jpeg", "text/markdown", "text/latex",
                    "text/plain")


def format_plain_text(text: str, fmt_spec: str) -> str:
    """``{glue:text}`name:fmt``` as myst-nb formats it: the literal value of ``text`` (quotes removed)
    formatted with ``fmt_spec``, converted to int or float as its type character asks."""
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if fmt_spec == "":
        return str(value)
    type_char = fmt_spec[-1]
    if type_char == "s":
        value = str(value)
    elif type_char in "bcdoxX":
        value = int(value)
    elif type_char in "eEfFgGn%":
        value = float(value)
    return format(value, fmt_spec)


def _escape_markdown(text: str) -> str:
    """Plain text inserted into Markdown, shown as typed (myst-nb inserts it as a text node)."""
    text = re.sub(r"([\\`*_\[\]|$])", r"\\\1", text)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _pasted(kind: str | None, content: str) -> str:
    """The Markdown that a glue role with ``content`` (``name`` or ``name:format``) shows."""
    from IPython.core.formatters import format_display_data

    name, fmt = content, None
    if kind in ("text", "md") and ":" in content:
        name, fmt = content.rsplit(":", 1)
    if name not in GLUED:
        return NOT_YET
    data, _ = format_display_data(GLUED[name])
    if kind == "text":
        return _escape_markdown(format_plain_text(data["text/plain"], "s" if fmt is None else fmt))
    if kind == "md":
        if "text/markdown" not in data:
            raise ValueError(f"{{glue:md}}`{name}`: the value has no Markdown form")
        return data["text/markdown"]
    mime = next(m for m in _INLINE_PRIORITY if m in data)
    if mime == "text/plain":
        return _escape_markdown(data[mime])
    if mime in ("image/png", "image/jpeg"):
        return f'<img src="data:{mime};base64,{data[mime]}"/>'
    return data[mime]


# Shown for a value the chapter computes further down; the text is updated when it is glued.
NOT_YET = "*(computed by a cell below)*"
# Prose displayed before all its values existed: display id -> its Markdown.
_WAITING: dict[str, str] = {}


def _rendered(markdown: str) -> str:
    return GLUE_ROLE.sub(lambda m: _pasted(m["kind"], m["content"]), markdown)


def _update_waiting_prose(name: str) -> None:
    for display_id, markdown in list(_WAITING.items()):
        if any(m["content"].split(":")[0] == name for m in GLUE_ROLE.finditer(markdown)):
            from IPython.display import Markdown, update_display

            # the metadata marks text completed after it was shown (tests/test_notebooks.py reads it)
            update_display(Markdown(_rendered(markdown)), display_id=display_id,
                           metadata={"advcourse": {"completed_later": True}})
            if not any(m["content"].split(":")[0] not in GLUED for m in GLUE_ROLE.finditer(markdown)):
                del _WAITING[display_id]


def prose(markdown: str):
    """Display ``markdown`` with each glue role replaced by this kernel's value.

    The Colab notebooks show a chapter's prose that quotes measured numbers through this function,
    so the numbers are those of the reader's own run. A value not computed yet shows as
    :data:`NOT_YET`, and the text is updated in place when :func:`glue` records it.

    Examples
    --------
    >>> _ = glue("doc_example", "12.3%")
    >>> _rendered("accuracy {glue:}`doc_example`")
    'accuracy 12.3%'
    """
    import uuid

    from IPython.display import Markdown, display

    display_id = uuid.uuid4().hex
    if any(m["content"].split(":")[0] not in GLUED for m in GLUE_ROLE.finditer(markdown)):
        _WAITING[display_id] = markdown
    display(Markdown(_rendered(markdown)), display_id=display_id)


def show_source(obj) -> MarkdownCode:
    """The source code of a package function or class, shown as a highlighted block."""
    import inspect

    return MarkdownCode(inspect.getsource(obj))


class MarkdownCode:
    """Python source that renders as a fenced code block."""

    def __init__(self, code: str):
        self.code = code

    def _repr_markdown_(self) -> str:
        return f"```python\n{self.code.rstrip()}\n```"

    def __repr__(self) -> str:
        return self.code


def num(value: float, spec: str = ".3g", *, if_nan: str = "—") -> str:
    """``format(value, spec)``, or ``if_nan`` for NaN: a mean over an empty selection (e.g. the
    distortion of an attack that succeeded on no image) shows as a dash, not as 'nan'."""
    return if_nan if math.isnan(float(value)) else format(float(value), spec)


def pct(fraction: float, digits: int = 1, *, if_nan: str | None = None) -> str:
    """0.1234 -> '12.3%'.

    A rate over an empty set is NaN, which shows as ``'nan%'``; pass ``if_nan`` (e.g. ``"—"``) to show
    that text instead. Finite values are formatted the same with or without it.
    """
    if if_nan is not None and math.isnan(float(fraction)):
        return if_nan
    return f"{100 * fraction:.{digits}f}%"


class MarkdownTable:
    """A table that renders as Markdown in notebooks and in the built book."""

    def __init__(self, headers: Sequence[str], rows: Sequence[Sequence]):
        if any(len(r) != len(headers) for r in rows):
            raise ValueError("rows must each have one cell per header")
        self.headers, self.rows = list(headers), [list(map(str, r)) for r in rows]

    def to_markdown(self) -> str:
        esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(map(esc, self.headers)) + " |",
                 "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(map(esc, r)) + " |" for r in self.rows]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:  # plain-text fallback, e.g. in a terminal
        return self.to_markdown()


def paper_vs_book(rows: Sequence[Sequence]) -> MarkdownTable:
    """The "paper vs this book" table: rows of (quantity, paper's number, ours, setting)."""
    return MarkdownTable(["quantity", "paper", "this book", "what differs"], rows)
