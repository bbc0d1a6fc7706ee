"""Tables of the README written from the result files, between markers, never by hand.

A block is ``<!-- NAME:start -->`` … ``<!-- NAME:end -->``; :func:`write_block` replaces its content with a
table generated from a result file, and the test suite checks with :func:`block` that the README still holds
what the file gives.
"""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def block(text: str, name: str) -> str:
    """The content of block ``name`` in ``text`` (between its markers, without the newline after the first)."""
    start, end = markers(name)
    i, j = text.index(start) + len(start), text.index(end)
    return text[i:j].removeprefix("\n")


def write_block(readme: str | Path, name: str, content: str) -> None:
    """Replace the content of block ``name`` in the file ``readme`` with ``content``."""
    path = Path(readme)
    text = path.read_text()
    start, end = markers(name)
    i, j = text.index(start) + len(start), text.index(end)
    path.write_text(text[:i] + "\n" + content + text[j:])
