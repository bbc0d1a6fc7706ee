"""Every example in the README and the documentation works: each Python block runs (on a small model that a
fixture trains where the examples expect the demo's run), and each ``waveletflow`` command line of a bash block
is accepted by the command's parser. The tables between ``<!-- NAME:start/end -->`` markers are checked against
their result files in ``test_benchmarks.py``."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PLACEHOLDERS = ("[", "|", "...", "…", "<", "{")
SHELL_OPERATORS = {"&", "&&", ";", "||", ">", "2>", ">>"}


def blocks(path: Path, lang: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(path.read_text()) if m.group(1) == lang]


def command_lines(text: str) -> list[list[str]]:
    """The ``waveletflow`` command lines of a bash block, continuations joined, comments dropped; lines with a
    synopsis' placeholders (``[--opt]``, ``a|b``, ``...``) are left out."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for i, w in enumerate(words):  # the command ends at a shell operator
            if w in SHELL_OPERATORS:
                words = words[:i]
                break
        if not words or any(p in line.split("#")[0] for p in PLACEHOLDERS):
            continue
        if words[0].endswith("waveletflow"):
            out.append(words[1:])
        elif words[0] == "torchrun" and "waveletflow" in words:
            out.append(words[words.index("waveletflow") + 1:])
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from waveletflow.training import TrainOptions, train

    d = tmp_path_factory.mktemp("docs")
    train(d / "runs" / "digits", "digits", opts=TrainOptions(steps=2, batch_size=8, seed=0, curves=False,
                                                             progress=False, eval_every=10**6))
    return d


PY_PAGES = [p for p in PAGES if blocks(p, "python")]


def test_the_readme_and_the_getting_started_page_have_python_examples():
    assert {p.name for p in PY_PAGES} >= {"README.md", "getting-started.md"}


@pytest.mark.parametrize("page", PY_PAGES, ids=[str(p.relative_to(REPO)) for p in PY_PAGES])
def test_python_examples_run(page, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks(page, "python")):
        try:
            exec(compile(code, f"{page.name}, block {i + 1}", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the failure's message names the block
            pytest.fail(f"{page.relative_to(REPO)}, Python block {i + 1}: {type(e).__name__}: {e}")


def test_command_lines_in_the_docs_parse():
    from waveletflow.cli import build_parser

    parser, checked, bad = build_parser(), 0, []
    for page in PAGES:
        for block in blocks(page, "bash"):
            for argv in command_lines(block):
                checked += 1
                try:
                    parser.parse_args(argv)
                except SystemExit:
                    bad.append(f"{page.relative_to(REPO)}: waveletflow {' '.join(argv)}")
    assert not bad, "\n".join(bad)
    assert checked >= 20  # the filter keeps most of them


def test_command_lines_filter():
    assert command_lines("waveletflow train --data d --out r \\\n  --steps 3  # a comment\n") == [
        ["train", "--data", "d", "--out", "r", "--steps", "3"]]
    assert command_lines("waveletflow train [--steps N]\nls\n") == []
    assert command_lines("waveletflow info r & wait") == [["info", "r"]]
    assert command_lines("torchrun --nproc_per_node 2 -m waveletflow evaluate r --data d") == [
        ["evaluate", "r", "--data", "d"]]


def test_the_docs_build_with_warnings_as_errors(tmp_path):
    """``mkdocs build --strict``: no broken link or anchor, no missing included result file, no docstring the
    API reference cannot read (installed by ``pip install -e ".[docs]"``, which ``scripts/setup.sh`` does)."""
    pytest.importorskip("mkdocstrings")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir",
                           str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "models" / "index.html").is_file()


def test_every_public_module_has_an_api_page():
    """Each module and package of ``waveletflow`` has its reference page (a package's page holds its modules)."""
    import waveletflow

    root = Path(waveletflow.__file__).parent
    rooms = {p.name.removesuffix(".py") for p in root.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file()) and not p.name.startswith("_")}
    pages = {p.stem for p in (REPO / "docs" / "api").glob("*.md")}
    assert rooms <= pages, sorted(rooms - pages)
    nav = (REPO / "mkdocs.yml").read_text()
    assert all(f"api/{name}.md" in nav for name in pages)
