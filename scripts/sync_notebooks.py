"""Keep each chapter's paired .ipynb (for Colab) in sync with its MyST Markdown source.

The Markdown files in chapters/ are the source of truth. This script

1. writes the repository URL from _config.yml into each chapter's Colab set-up
   cell (the line ``REPO_URL = "..."``), so the URL is set in one place;
2. writes ``chapters/<name>.ipynb`` from ``chapters/<name>.md`` with jupytext,
   without outputs.

``--check`` changes nothing and exits 1 if any file is out of date.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

import jupytext
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
URL_LINE = re.compile(r'^REPO_URL = "[^"]*"$', re.M)


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"]


def expected_files(md: pathlib.Path, url: str) -> tuple[str, str]:
    """The Markdown text (with the URL set) and the paired notebook text."""
    text = md.read_text()
    if not URL_LINE.search(text):
        raise ValueError(f"{md.name}: no 'REPO_URL = \"...\"' line in its Colab set-up cell")
    text = URL_LINE.sub(f'REPO_URL = "{url}"', text)
    notebook = jupytext.reads(text, fmt="md:myst")
    notebook.metadata["jupytext"] = {"formats": "ipynb,md:myst"}
    for i, cell in enumerate(notebook.cells):  # stable ids: nbformat would draw random ones
        cell["id"] = f"cell-{i:03d}"
    return text, jupytext.writes(notebook, fmt="ipynb")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report out-of-date files, change nothing")
    args = parser.parse_args(argv)
    url, stale = repository_url(), []
    for md in sorted((ROOT / "chapters").glob("*.md")):
        text, ipynb_text = expected_files(md, url)
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
