"""The README is executed: every shell command and Python snippet in it runs, in order.

Fenced ``bash`` and ``python`` blocks run one after another in a scratch folder (with links to
this checkout's ``tests``, ``bench``, ``strategies``, ``reports`` and configuration, so paths in
the README resolve), with ``ACCELBENCH_SMOKE=1`` (the variable the README names) capping sizes.
A block preceded by ``<!-- readme-test: check-only: why -->`` (a GPU, the hub, a cluster, a
long training, the test suite itself) is only checked: bash for syntax, every ``accelbench``
subcommand and option against that command's ``--help``; Python by compiling it. In the
install line, the steps that set up an environment (venv, activate, pip) are checked, not
run: CI has just run them. Blocks in other languages (``text``, ``toml``) are examples of
output or files and are not run.

A README statement that stops being true fails here: a command that errors, an option that
no longer exists, a snippet that raises.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*check-only:\s*(.+?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
#: Install steps of a command line, checked but not run (CI has just run them).
SETUP = re.compile(r"^(python3? -m venv\b|\. \.venv/bin/activate$|source \.venv/bin/activate$|pip install\b)")
LINKED = ("tests", "bench", "strategies", "reports", "pyproject.toml")


@dataclass(frozen=True)
class Block:
    """A fenced block of the README."""

    lang: str
    code: str
    line: int
    check_only: str | None = None

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def extract(text: str) -> list[Block]:
    """Every fenced block, with the check-only marker of the line before it."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang, body = i, m.group(1), []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.search(prev)
        blocks.append(Block(lang, "\n".join(body), start + 1, marker.group(1) if marker else None))
        i += 1
    return blocks


def commands(code: str) -> list[str]:
    """The shell commands of a bash block: comments dropped, continued lines joined."""
    out, current = [], ""
    for raw in code.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        out.append((current + line.strip()).strip())
        current = ""
    return out


@cache
def _help(sub: str) -> str:
    res = subprocess.run([sys.executable, "-m", "bench.cli", sub, "--help"], capture_output=True,
                         text=True, cwd=ROOT)
    return res.stdout if res.returncode == 0 else ""


def check_command(command: str) -> list[str]:
    """Problems with ``command`` found without running it: shell syntax, and each
    ``accelbench`` subcommand and ``--option`` against the real ``--help``."""
    problems = []
    syntax = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
    if syntax.returncode:
        problems.append(f"shell syntax: {syntax.stderr.strip()}")
    for part in re.split(r"&&|\|\||;|\|", command):
        try:
            words = shlex.split(part)
        except ValueError as exc:
            problems.append(f"cannot parse {part!r}: {exc}")
            continue
        if not words or words[0] != "accelbench":
            continue
        if len(words) < 2 or words[1].startswith("-"):
            continue
        sub = words[1]
        text = _help(sub)
        if not text:
            problems.append(f"accelbench has no command {sub!r}")
            continue
        for w in words[2:]:
            if w.startswith("--"):
                option = w.split("=", 1)[0]
                if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text):
                    problems.append(f"accelbench {sub} has no option {option}")
    return problems


def check_block(block: Block) -> list[str]:
    """Problems of a block that is only checked."""
    if block.lang == "python":
        try:
            ast.parse(block.code)
        except SyntaxError as exc:
            return [f"Python syntax: {exc}"]
        return []
    return [p for c in commands(block.code) for p in check_command(c)]


def _run_bash(command: str, cwd: Path, env: dict[str, str]) -> None:
    steps = [s.strip() for s in command.split("&&")]
    setup = [s for s in steps if SETUP.match(s)]
    for s in setup:
        assert check_command(s) == [], (s, check_command(s))
    rest = " && ".join(s for s in steps if not SETUP.match(s))
    if not rest:
        return
    res = subprocess.run(["bash", "-eo", "pipefail", "-c", rest], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{rest}\nexit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


def _env() -> dict[str, str]:
    venv = Path(sys.executable).parent
    return {**os.environ, "ACCELBENCH_SMOKE": "1", "OMP_NUM_THREADS": "1",
            "PATH": f"{venv}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}


# -- the extractor, on deliberately broken copies ------------------------------------------------
BROKEN = """
Some text.

<!-- readme-test: check-only: needs a GPU -->
```bash
accelbench run --model arch:sdxl --device cuda --no-such-option 3
```

<!-- readme-test: check-only: an example -->
```bash
accelbench frobnicate --fast
```

<!-- readme-test: check-only: an example -->
```python
def broken(:
```

```text
not run, not checked
```
"""


def test_the_extractor_finds_blocks_and_markers():
    blocks = extract(BROKEN)
    assert [(b.lang, b.check_only) for b in blocks] == [
        ("bash", "needs a GPU"), ("bash", "an example"), ("python", "an example"), ("text", None)]
    assert blocks[0].line == 5  # the fence's line
    assert commands("a \\\n  --b  # c\n# only a comment\nd") == ["a --b", "d"]


def test_a_broken_copy_fails_the_checks():
    gpu, unknown, python, _ = extract(BROKEN)
    assert check_block(gpu) == ["accelbench run has no option --no-such-option"]
    assert check_block(unknown) == ["accelbench has no command 'frobnicate'"]
    assert check_block(python)[0].startswith("Python syntax")
    assert check_command("accelbench run --steps 3 (") != []  # shell syntax


def test_readme_blocks_that_are_only_checked_are_right():
    for block in extract(README.read_text(encoding="utf-8")):
        if block.check_only:
            assert check_block(block) == [], block.where


def test_the_readme_runs(tmp_path):
    """Every bash and Python block, in order, in one scratch folder."""
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    env = _env()
    ran = 0
    for block in extract(README.read_text(encoding="utf-8")):
        if block.check_only or block.lang not in ("bash", "python"):
            continue
        if block.lang == "bash":
            for command in commands(block.code):
                _run_bash(command, tmp_path, env)
        else:
            res = subprocess.run([sys.executable, "-c", block.code], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=600)
            assert res.returncode == 0, f"{block.where}\n{block.code}\n{res.stderr[-3000:]}"
        ran += 1
    assert ran >= 10, "the README should show more than this"
