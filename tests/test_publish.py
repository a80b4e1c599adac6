"""The publishing workflow runs the README's two commands and publishes the book that `make book` builds."""

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKFLOW = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    """The commands of the README's "The two commands" block, e.g. ['make book', 'make test']."""
    block = re.search(r"## The two commands\s+```bash\n(.*?)```", README, re.S)[1]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def runs(job: str) -> list[str]:
    return [step["run"].strip() for step in WORKFLOW["jobs"][job]["steps"] if "run" in step]


def uses(job: str) -> list[str]:
    return [step["uses"].split("@")[0] for step in WORKFLOW["jobs"][job]["steps"] if "uses" in step]


def test_the_workflow_tests_on_every_push_and_pull_request():
    triggers = WORKFLOW[True]  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    assert readme_commands() == ["make book", "make test"]
    assert runs("test") == ["make test"]


def test_the_book_is_built_by_the_readme_command_and_published_from_main_after_the_tests():
    assert runs("build") == ["make book"] and WORKFLOW["jobs"]["build"]["needs"] == "test"
    upload = next(s for s in WORKFLOW["jobs"]["build"]["steps"] if s.get("uses", "").startswith(
        "actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"  # where `make book` writes the HTML
    assert uses("deploy") == ["actions/deploy-pages"] and WORKFLOW["jobs"]["deploy"]["needs"] == "build"
    assert WORKFLOW["jobs"]["deploy"]["if"] == "github.ref == 'refs/heads/main'"
    assert WORKFLOW["permissions"]["pages"] == "write" and WORKFLOW["permissions"]["id-token"] == "write"


def test_the_readme_points_to_where_the_book_is_published():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    owner, repo = re.match(r"https://github\.com/([^/]+)/([^/]+)", config["repository"]["url"]).groups()
    assert f"https://{owner}.github.io/{repo}/" in README
    assert ".github/workflows/book.yml" in README
