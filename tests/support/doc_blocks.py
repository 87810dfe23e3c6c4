"""The code blocks of README.md and docs/quickstart.rst, with what the doc tests do with each.

Every code block of those two files carries a marker right before it, so that none escapes the tests unnoticed:

- README.md: an HTML comment line ``<!-- doc-test: ACTION -->`` just before the fenced block;
- reST: a comment ``.. doc-test: ACTION`` (continued on indented lines), a blank line, then the
  ``.. code-block::`` or ``.. literalinclude::`` directive.

ACTION is one of ``run`` (a bash block, run as written), ``file PATH`` (the block is saved as PATH before the
``run`` blocks after it), ``same-as FILE REGION`` (the block must equal the ``# [START REGION]`` ... ``# [END
REGION]`` part of FILE) or ``skip: REASON`` (not run, and the reason says why, e.g. it installs the project).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^doc-test:\s*(?P<action>run|file|same-as|skip)\b:?\s*(?P<arg>.*)$", re.S)


@dataclass(frozen=True)
class Block:
    """One code block: where it is, its language, its text (as a user copies it) and the marker's action."""

    source: str
    line: int
    language: str
    text: str
    action: str | None
    arg: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line} ({self.language} block, doc-test: {self.action} {self.arg})".strip()


def region(path: Path, name: str, dedent: bool = True) -> str:
    """The lines between ``# [START name]`` and ``# [END name]`` of a file (as ``literalinclude`` shows them)."""
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if f"[START {name}]" in line)
    end = next(i for i, line in enumerate(lines) if f"[END {name}]" in line)
    text = "".join(lines[start + 1:end])
    return textwrap.dedent(text) if dedent else text


def _marker(comment: str) -> tuple[str | None, str]:
    found = MARKER.match(" ".join(comment.split()))
    return (found["action"], found["arg"].strip()) if found else (None, "")


def markdown_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, each with the ``<!-- doc-test: ... -->`` line before it."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(```+)(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(fence[1]))
        before = lines[i - 1].strip() if i else ""
        comment = re.match(r"^<!--\s*(.*?)\s*-->$", before)
        action, arg = _marker(comment[1]) if comment else (None, "")
        blocks.append(Block(path.name, i + 1, fence[2] or "text", "\n".join(lines[i + 1:end]) + "\n", action, arg))
        i = end + 1
    return blocks


def rst_blocks(path: Path) -> list[Block]:
    """The ``code-block`` and ``literalinclude`` directives of a reST file, each with its ``.. doc-test:`` comment."""
    lines = path.read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        directive = re.match(r"^(\s*)\.\. (code-block|literalinclude)::\s*(\S*)\s*$", line)
        if not directive:
            continue
        indent = len(directive[1])
        body: list[str] = []
        options: dict[str, str] = {}
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            option = re.match(r"^\s+:([\w-]+):\s*(.*)$", lines[j])
            if option and not body:
                options[option[1]] = option[2]
            elif lines[j].strip() or body:
                body.append(lines[j])
            j += 1
        if directive[2] == "literalinclude":
            included = (path.parent / directive[3]).resolve()
            start, end = options.get("start-after"), options.get("end-before")
            if start and end:
                name = re.sub(r"^\[START (.*)\]$", r"\1", start)
                text = region(included, name)
            else:
                text = included.read_text()
            language = options.get("language", "text")
        else:
            text = textwrap.dedent("\n".join(body).rstrip("\n")) + "\n"
            language = directive[3] or "text"
        # the comment before it: '.. doc-test: ...' and its indented continuation lines, then blank lines
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        comment_lines = []
        while k >= 0 and lines[k].startswith("   ") and not lines[k].lstrip().startswith(".."):
            comment_lines.insert(0, lines[k].strip())
            k -= 1
        action, arg = (None, "")
        if k >= 0 and lines[k].startswith(".. doc-test:"):
            action, arg = _marker(" ".join([lines[k][3:], *comment_lines]))
        blocks.append(Block(path.name, i + 1, language, text, action, arg))
    return blocks


def script(blocks: list[Block]) -> str:
    """One bash script that saves the ``file`` blocks and runs the ``run`` blocks, in the order of the page."""
    parts = ["set -euo pipefail"]
    for block in blocks:
        if block.action == "run":
            assert block.language in ("bash", "console", "sh"), f"{block}: only shell blocks can be run"
            parts.append(f"echo '+ doc-test: {block.source}:{block.line}'")
            parts.append(block.text)
        elif block.action == "file":
            target = block.arg
            parts.append(f"mkdir -p \"$(dirname '{target}')\"")
            parts.append(f"cat > '{target}' <<'DOC_TEST_EOF'\n{block.text.rstrip()}\nDOC_TEST_EOF")
    return "\n".join(parts) + "\n"
