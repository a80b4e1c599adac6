"""Write the chapters' Colab notebooks (chapters/*.ipynb) from their MyST Markdown sources.

The Markdown files in chapters/ are the source of truth; the notebooks are what the Colab button
and a download open, so they must read well without Jupyter Book. This script

1. writes the repository URL from _config.yml into each chapter's Colab set-up cell
   (the line ``REPO_URL = "..."``), so the URL is set in one place;
2. writes ``chapters/<name>.ipynb``, the chapter converted to plain notebook Markdown by
   :func:`colab_notebook`, without outputs: exercises become numbered headings, solutions
   collapsed ``<details>`` blocks (removed in the ``student`` edition), admonitions block quotes,
   citations "(Madry et al., 2018)" with a reference list at the end, equation and exercise
   references the numbers the book shows, and each Markdown cell that quotes a glued number a
   hidden code cell that renders it with the reader's own values (``advcourse.report.prose``).

``--check`` changes nothing and exits 1 if any file is out of date.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import pathlib
import re
import sys

import jupytext
import nbformat
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
URL_LINE = re.compile(r'^REPO_URL = "[^"]*"$', re.M)

# MyST syntax the converter understands. A fenced directive (``` or :::, any length, nested by length);
# its body starts with ``:option: value`` lines.
DIRECTIVE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>[^\n]*)\n"
                       r"(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S)
OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>[^\n]*)$")
ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<content>[^`]*)`")
TARGET = re.compile(r"^\((?P<label>[\w.:-]+)\)=[ \t]*\n", re.M)
LABELLED_MATH = re.compile(r"^\$\$(?P<body>.*?)\$\$[ \t]*\((?P<label>[\w.:-]+)\)[ \t]*$", re.M | re.S)
AUTHOR_CITE = re.compile(r"(?P<who>[A-Z][\w'-]+(?: et al\.| and [A-Z][\w'-]+)?) \{cite(?::p)?\}`(?P<key>[^`,]+)`")
GLUE = re.compile(r"\{glue(?::\w*)?\}`")
# Admonitions that render as a titled block quote.
ADMONITIONS = {"admonition", "note", "warning", "tip", "hint", "important", "caution", "attention", "danger",
               "error", "seealso"}


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"]


def site_url() -> str:
    """The published book (GitHub Pages of the repository), e.g. https://owner.github.io/name/."""
    owner, name = repository_url().rstrip("/").split("/")[-2:]
    return f"https://{owner}.github.io/{name}/"


def with_url(text: str, md_name: str = "chapter") -> str:
    """The chapter's MyST text with the repository URL set in its Colab set-up cell."""
    if not URL_LINE.search(text):
        raise ValueError(f"{md_name}: no 'REPO_URL = \"...\"' line in its Colab set-up cell")
    return URL_LINE.sub(f'REPO_URL = "{repository_url()}"', text)


# ---------------------------------------------------------------------------------------------------
# What the book numbers and cites: read once from the sources in table-of-contents order
# ---------------------------------------------------------------------------------------------------

def toc_documents() -> list[str]:
    """The book's documents in reading order, e.g. ['book/intro', ..., 'chapters/01_linear_explanation', ...]."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]


@dataclasses.dataclass
class BookIndex:
    """Numbers and titles as the built book shows them: Sphinx numbers labelled equations and
    sphinx-exercise numbers exercises through the whole book, in table-of-contents order."""

    equations: dict[str, int]
    exercises: dict[str, tuple[int, str]]  # label -> (number, title)
    sections: dict[str, tuple[str, str]]   # label -> (document, section title)
    documents: dict[str, str]               # document -> its first heading


@functools.cache
def book_index() -> BookIndex:
    equations, exercises, sections, documents = {}, {}, {}, {}
    for doc in toc_documents():
        path = ROOT / f"{doc}.md"
        if not path.exists():  # e.g. the generated Runtime page
            continue
        text = path.read_text()
        heading = re.search(r"^# (.+)$", text, re.M)
        documents[doc] = heading[1].strip() if heading else doc
        for m in LABELLED_MATH.finditer(text):
            equations[m["label"]] = len(equations) + 1
        for m in DIRECTIVE.finditer(text):
            options, _ = split_options(m["body"])
            if m["name"] == "math" and "label" in options:
                equations[options["label"]] = len(equations) + 1
            if m["name"] == "exercise" and "nonumber" not in options:
                exercises[options.get("label", f"{doc}-exercise-{len(exercises)}")] = (len(exercises) + 1,
                                                                                      m["arg"].strip())
        for m in re.finditer(r"^\((?P<label>[\w.:-]+)\)=[ \t]*\n+#+ (?P<title>.+)$", text, re.M):
            sections[m["label"]] = (doc, m["title"].strip())
    return BookIndex(equations, exercises, sections, documents)


def split_options(body: str) -> tuple[dict[str, str], str]:
    """A directive body's leading ``:key: value`` lines as a dict, and the rest."""
    lines, options = body.split("\n"), {}
    while lines and (m := OPTION.match(lines[0])):
        options[m["key"]] = m["value"].strip()
        lines.pop(0)
    return options, "\n".join(lines).strip("\n")


@functools.cache
def bibliography() -> dict:
    """The entries of book/references.bib (pybtex), by key."""
    from pybtex.database import parse_file

    return parse_file(str(ROOT / "book" / "references.bib")).entries


def latex_text(text: str) -> str:
    """A BibTeX field as plain text: braces and LaTeX accents resolved."""
    from pybtex.richtext import Text

    return str(Text.from_latex(text)).replace("\\&", "&")


def last_names(person) -> str:
    return latex_text(" ".join(person.prelast_names + person.last_names))


@functools.cache
def citation_labels() -> dict[str, str]:
    """key -> "Madry et al., 2018", as sphinxcontrib-bibtex's author-year style labels them: one author
    by surname, two joined by "and", more as "First et al.", then the year field as written (the bib
    tells same-author years apart itself: 2017a, 2017b)."""
    labels = {}
    for key, entry in bibliography().items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        if len(people) == 1:
            who = last_names(people[0])
        elif len(people) == 2:
            who = f"{last_names(people[0])} and {last_names(people[1])}"
        else:
            who = f"{last_names(people[0])} et al." if people else latex_text(entry.fields.get("title", key))
        labels[key] = f"{who}, {entry.fields.get('year', 'n.d.')}"
    return labels


def reference_entry(key: str) -> str:
    """One entry of a notebook's reference list, in Markdown."""
    entry = bibliography()[key]
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [f"{' '.join(p.first_names + p.middle_names)} {last_names(p)}".strip() for p in people]
    names = [latex_text(n) for n in names]
    authors = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1] if names else ""
    fields = {k: latex_text(v) for k, v in entry.fields.items()}
    venue = fields.get("booktitle") or fields.get("journal") or fields.get("howpublished") or fields.get("publisher")
    parts = [f"{authors}." if authors else "", f"*{fields.get('title', key)}*.", f"{venue}." if venue else "",
             f"{fields.get('year', '')}."]
    if "doi" in entry.fields:
        parts.append(f"[doi:{entry.fields['doi']}](https://doi.org/{entry.fields['doi']})")
    elif "eprint" in entry.fields:
        parts.append(f"[arXiv:{entry.fields['eprint']}](https://arxiv.org/abs/{entry.fields['eprint']})")
    elif "url" in entry.fields:
        parts.append(f"<{entry.fields['url']}>")
    label = citation_labels()[key]
    return f"- **{label}**: " + " ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------------
# MyST → notebook Markdown
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Conversion:
    """The state of converting one chapter: its document name, the edition and the keys it cites."""

    doc: str
    edition: str = "full"
    cited: list[str] = dataclasses.field(default_factory=list)

    def book_link(self, doc: str, anchor: str = "") -> str:
        return f"{site_url()}{doc}.html" + (f"#{anchor}" if anchor else "")

    # --- roles -----------------------------------------------------------------------------------

    def cite(self, keys: str, textual: bool) -> str:
        items = []
        for key in (k.strip() for k in keys.split(",")):
            if key not in citation_labels():
                raise ValueError(f"{self.doc}: {{cite}}`{key}` is not in book/references.bib")
            if key not in self.cited:
                self.cited.append(key)
            who, year = citation_labels()[key].rsplit(", ", 1)
            items.append(f"{who} ({year})" if textual else f"{who}, {year}")
        return "; ".join(items) if textual else "(" + "; ".join(items) + ")"

    def author_cite(self, m: re.Match) -> str:
        """"Madry et al. {cite}`madry2018towards`" reads "Madry et al. (2018)" (the authors named once)."""
        label = citation_labels().get(m["key"], "")
        if not label.startswith(m["who"] + ", "):
            return m[0]
        if m["key"] not in self.cited:
            self.cited.append(m["key"])
        return f"{m['who']} ({label.rsplit(', ', 1)[1]})"

    def reference(self, content: str, numbered: bool = False) -> str:
        """{ref}/{numref}: an exercise becomes "Exercise 14", a section its title (a link to the book
        when it is in another chapter); ``text <label>`` keeps the text."""
        text, label = content, content
        if m := re.fullmatch(r"(?P<text>.*?)\s*<(?P<label>[^>]+)>", content, re.S):
            text, label = m["text"], m["label"]
        index = book_index()
        if label in index.exercises:
            shown = f"Exercise {index.exercises[label][0]}"
            return text.replace("{number}", str(index.exercises[label][0])) if text != label else shown
        if label in index.sections:
            doc, title = index.sections[label]
            shown = title if text == label else text
            return shown if doc == self.doc else f"[{shown}]({self.book_link(doc, label)})"
        raise ValueError(f"{self.doc}: unknown reference target {label!r}")

    def role(self, m: re.Match) -> str:
        role, content = m["role"], m["content"]
        if role.startswith("glue"):
            return m[0]  # rendered in the reader's kernel: see glue_cell
        if role in ("cite", "cite:p", "cite:ps"):
            return self.cite(content, textual=False)
        if role in ("cite:t", "cite:ts"):
            return self.cite(content, textual=True)
        if role == "eq":
            if content not in book_index().equations:
                raise ValueError(f"{self.doc}: {{eq}}`{content}` has no labelled equation")
            return f"({book_index().equations[content]})"
        if role in ("ref", "numref"):
            return self.reference(content)
        if role == "term":
            m2 = re.fullmatch(r"(?P<text>.*?)\s*<(?P<term>[^>]+)>", content, re.S)
            return f"[{m2['text'] if m2 else content}]({self.book_link('book/glossary')})"
        if role == "doc":
            m2 = re.fullmatch(r"(?P<text>.*?)\s*<(?P<target>[^>]+)>", content, re.S)
            target = m2["target"] if m2 else content
            doc = str(pathlib.PurePosixPath(self.doc).parent / target) if not target.startswith("/") else target[1:]
            doc = re.sub(r"[^/]+/\.\./", "", doc)
            return f"[{m2['text'] if m2 else book_index().documents.get(doc, doc)}]({self.book_link(doc)})"
        if role in ("sub", "sup"):
            return f"<{role}>{content}</{role}>"
        if role == "math":
            return f"${content}$"
        raise ValueError(f"{self.doc}: no notebook form for the role {{{role}}}")

    # --- directives ------------------------------------------------------------------------------

    def directive(self, m: re.Match) -> str:
        name, arg = m["name"], m["arg"].strip()
        options, body = split_options(m["body"])
        body = self.markdown(body)  # nested directives, roles, equations
        index = book_index()
        if name == "exercise":
            number, title = index.exercises[options["label"]]
            heading = f"### Exercise {number}" + (f" ({title})" if title else "")
            return f"{heading}\n\n{body}"
        if name == "solution":
            if self.edition == "student":
                return ""
            number = index.exercises[arg][0]
            return (f"<details>\n<summary><b>Solution to Exercise {number}</b> (click to show)</summary>\n\n"
                    f"{body}\n\n</details>")
        if name == "solution-start":  # a solution with code cells, up to {solution-end}: see strip_gated
            return f"**Solution to Exercise {index.exercises[arg][0]}**"
        if name == "solution-end":
            return ""
        if name in ADMONITIONS:
            title = arg if name == "admonition" else (arg or {"seealso": "See also"}.get(name, name.capitalize()))
            quoted = "\n".join(f"> {line}".rstrip() for line in body.split("\n"))
            return f"> **{title}**\n>\n{quoted}"
        if name == "math":
            number = index.equations.get(options.get("label", ""))
            return f"$$\n{body}" + (f"\n\\tag{{{number}}}" if number else "") + "\n$$"
        if name in ("code", "code-block", "sourcecode"):
            return f"```{arg}\n{m['body'] if not options else body}\n```"
        if name == "figure":
            caption = f"\n\n*{body}*" if body else ""
            return f"![{options.get('alt', body)}]({arg}){caption}"
        if name == "table":
            return (f"**{arg}**\n\n" if arg else "") + body
        raise ValueError(f"{self.doc}: no notebook form for the directive {{{name}}}")

    def markdown(self, text: str) -> str:
        """One Markdown text converted (its glue roles are left for the reader's kernel)."""
        text = DIRECTIVE.sub(self.directive, text)
        text = TARGET.sub("", text)
        index = book_index()

        def equation(m: re.Match) -> str:
            number = index.equations[m["label"]]
            return f"$${m['body'].rstrip()}\n\\tag{{{number}}}\n$$"

        text = LABELLED_MATH.sub(equation, text)
        text = re.sub(r"\(\{(cite|cite:p)\}`([^`]*)`\)", lambda m: f"{{{m[1]}}}`{m[2]}`", text)  # "({cite}`k`)"
        text = AUTHOR_CITE.sub(self.author_cite, text)
        text = ROLE.sub(self.role, text)
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


# Gated solutions ({solution-start} … {solution-end}) span cells; the student edition drops them whole.
GATE_START = re.compile(r"^(?P<f>`{3,}|:{3,})\{solution-start\}[^\n]*\n.*?^(?P=f)[ \t]*(\n|$)", re.M | re.S)
GATE_END = re.compile(r"^(?P<f>`{3,}|:{3,})\{solution-end\}[^\n]*\n.*?^(?P=f)[ \t]*(\n|$)", re.M | re.S)


def strip_gated(cells: list) -> list:
    """The cells without the gated solutions (the student edition), Markdown around them kept."""
    kept, inside = [], False
    for cell in cells:
        if cell.cell_type != "markdown":
            if not inside:
                kept.append(cell)
            continue
        text = cell.source
        if inside:
            end = GATE_END.search(text)
            if not end:
                continue
            text, inside = text[end.end():], False
        while start := GATE_START.search(text):
            end = GATE_END.search(text, start.end())
            if end:
                text = text[:start.start()] + text[end.end():]
            else:
                text, inside = text[:start.start()], True
                break
        if text.strip():
            cell.source = text
            kept.append(cell)
    if inside:
        raise ValueError("a {solution-start} has no matching {solution-end}")
    return kept


def sections(text: str) -> list[str]:
    """``text`` split before each heading (not inside code fences, display math or ``<details>``)."""
    blocks, current, fence, math, details = [], [], None, False, 0
    for line in text.split("\n"):
        if fence is None and not math and not details and re.match(r"#{1,6} ", line) and current:
            blocks.append("\n".join(current))
            current = []
        current.append(line)
        if m := re.match(r"^(`{3,}|~{3,})", line):
            fence = None if fence and m[1].startswith(fence) else (fence or m[1])
        elif fence is None:
            math ^= line.count("$$") % 2 == 1
            details += line.count("<details>") - line.count("</details>")
    blocks.append("\n".join(current))
    return [b.strip("\n") for b in blocks if b.strip()]


def markdown_cells(text: str) -> list[tuple[str, str]]:
    """Converted Markdown as cells: ("markdown", text) or ("prose", text quoting glued values). Sections
    with glue roles become prose, their heading kept in a Markdown cell (Colab's table of contents reads
    only Markdown cells); consecutive sections without glue stay one cell."""
    cells = []
    for block in sections(text):
        if GLUE.search(block):
            heading, _, rest = block.partition("\n")
            if re.match(r"#{1,6} ", heading) and not GLUE.search(heading):
                cells.append(("markdown", heading))
                block = rest.strip("\n")
            cells.append(("prose", block))
        elif cells and cells[-1][0] == "markdown":
            cells[-1] = ("markdown", cells[-1][1] + "\n\n" + block)
        else:
            cells.append(("markdown", block))
    return cells


def glue_cell(markdown: str):
    """A code cell that renders ``markdown`` with the kernel's glued values, its code hidden
    (a Colab form, a collapsed input in Jupyter)."""
    quote = '"""' if '"""' not in markdown and not markdown.endswith(("\\", '"')) else None
    literal = f'r{quote}\n{markdown}\n{quote}' if quote else repr(markdown)
    source = f"# @title\nfrom advcourse.report import prose\n\nprose({literal})"
    return nbformat.v4.new_code_cell(source, metadata={
        "cellView": "form", "jupyter": {"source_hidden": True}, "tags": ["prose"]})


def colab_notebook(md_path: pathlib.Path | str, edition: str = "full") -> nbformat.NotebookNode:
    """The notebook Colab opens for the chapter ``md_path`` (a MyST Markdown notebook), without outputs.

    ``edition``: "full" (solutions in collapsed blocks) or "student" (solutions removed, also the
    code cells of gated solutions). Code cells keep their source and tags; Markdown cells become
    plain notebook Markdown (see the module docstring), those quoting glued values code cells that
    render them with the reader's values.
    """
    if edition not in ("full", "student"):
        raise ValueError(f"edition must be 'full' or 'student', not {edition!r}")
    md_path = pathlib.Path(md_path)
    doc = md_path.resolve().relative_to(ROOT).with_suffix("").as_posix() if md_path.resolve().is_relative_to(ROOT) \
        else f"chapters/{md_path.stem}"
    source = jupytext.reads(with_url(md_path.read_text(), md_path.name), fmt="md:myst")
    cells = strip_gated(source.cells) if edition == "student" else source.cells
    conversion, out = Conversion(doc, edition), []
    for cell in cells:
        if cell.cell_type != "markdown":
            out.append(nbformat.v4.new_code_cell(cell.source, metadata=dict(cell.metadata)))
            continue
        for kind, text in markdown_cells(conversion.markdown(cell.source)):
            out.append(glue_cell(text) if kind == "prose" else nbformat.v4.new_markdown_cell(text))
    if conversion.cited:
        refs = "\n".join(reference_entry(k) for k in sorted(conversion.cited, key=lambda k: citation_labels()[k]))
        out.append(nbformat.v4.new_markdown_cell(f"## References\n\n{refs}"))
    edition_note = " (student edition: no solutions)" if edition == "student" else ""
    out.insert(1 if out and out[0].cell_type == "markdown" else 0, nbformat.v4.new_markdown_cell(
        f"*This notebook is generated from the chapter's source{edition_note}; the rendered chapter is at "
        f"[{site_url()}{doc}.html]({site_url()}{doc}.html). Run the cells from the top: the text "
        "quoting measured numbers is shown by hidden code cells, with the numbers of your own run.*"))
    nb = nbformat.v4.new_notebook(cells=out, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    })
    for i, cell in enumerate(nb.cells):  # stable ids: nbformat would draw random ones
        cell["id"] = f"cell-{i:03d}"
    return nb


def expected_files(md: pathlib.Path) -> tuple[str, str]:
    """The Markdown text (with the URL set) and the notebook text."""
    text = with_url(md.read_text(), md.name)
    return text, nbformat.writes(colab_notebook(md)) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report out-of-date files, change nothing")
    parser.add_argument("chapters", nargs="*", help="chapter names (default: all), e.g. 04_pgd_saddle_point")
    args = parser.parse_args(argv)
    stale = []
    names = args.chapters or [p.stem for p in sorted((ROOT / "chapters").glob("*.md"))]
    for name in names:
        md = ROOT / "chapters" / f"{pathlib.Path(name).stem}.md"
        if not md.exists():
            raise SystemExit(f"no chapter {md.relative_to(ROOT)}")
        text, ipynb_text = expected_files(md)
        ipynb = md.with_suffix(".ipynb")
        for path, want in ((md, text), (ipynb, ipynb_text)):
            if not path.exists() or path.read_text() != want:
                stale.append(path.relative_to(ROOT))
                if not args.check:
                    path.write_text(want)
    verb = "out of date" if args.check else "updated"
    for path in stale:
        print(f"{verb}: {path}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
