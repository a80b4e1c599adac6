"""Putting measured numbers into the book: tables and glued values.

Numbers quoted in a chapter's prose are glued from the run (myst-nb ``glue``),
never typed; tables are rendered from the measured values as Markdown.
"""

from __future__ import annotations

from collections.abc import Sequence


class _Text(str):
    """A string whose text form has no quotes, so ``{glue:}`` shows ``12.3%``, not ``'12.3%'``."""

    def __repr__(self) -> str:
        return str(self)


def glue(name: str, value, display: bool = False):
    """Record ``value`` under ``name`` for ``{glue:}`name``` in the chapter's prose.

    Strings are glued without quotes. Outside a book build (e.g. in Colab without
    myst-nb) the value is simply returned.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return value
    _glue(name, _Text(value) if isinstance(value, str) else value, display=display)
    return value


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


def pct(fraction: float, digits: int = 1) -> str:
    """0.1234 -> '12.3%'."""
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
