"""The layers hold: import-linter's contracts (pyproject.toml) pass, and a broken one fails.

CI runs ``lint-imports`` in its lint step; these tests keep that step honest: the contracts
are met by the tree as it is, and a contract the tree breaks makes the command fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def _lint(config: Path | None = None) -> subprocess.CompletedProcess:
    args = [LINT] + (["--config", str(config)] if config else [])
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_layer_contracts_hold():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert len(contracts) >= 4
    done = _lint()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in done.stdout


@pytest.mark.parametrize("source,forbidden", [
    ("bench.cli", "bench.core"),   # the CLI builds on the core: forbidding it must fail
    ("bench.measure.engine", "torch"),
])
def test_a_broken_contract_fails_the_lint_step(tmp_path, source, forbidden):
    config = tmp_path / "contracts.toml"
    config.write_text(
        "[tool.importlinter]\n"
        'root_packages = ["bench", "strategies", "reports"]\n'
        "include_external_packages = true\n\n"
        "[[tool.importlinter.contracts]]\n"
        'name = "deliberately broken"\n'
        'type = "forbidden"\n'
        f'source_modules = ["{source}"]\n'
        f'forbidden_modules = ["{forbidden}"]\n'
    )
    done = _lint(config)
    assert done.returncode != 0
    assert "deliberately broken BROKEN" in done.stdout


def _layout_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Layout"):]
    return section[section.index("```") + 3:section.index("```", section.index("```") + 3)]


def test_the_readme_layout_agrees_with_the_tree():
    """Every package and module at bench/'s top level (and strategies' subpackages) is named
    in the README's layout, and everything the layout names exists."""
    layout = _layout_block()
    named = {word.rstrip("/") for word in layout.split() if word.endswith(("/", ".py"))}
    bench = {p.name for p in (ROOT / "bench").iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert len(bench) + 1 <= 12, f"bench/ holds {len(bench) + 1} entries (at most 12)"
    assert bench <= named, f"not in the README's layout: {sorted(bench - named)}"
    subpackages = {p.name for p in (ROOT / "strategies").iterdir() if (p / "__init__.py").exists()}
    assert subpackages <= named, f"not in the README's layout: {sorted(subpackages - named)}"
    for name in named:
        found = [p for top in ("bench", "bench/models", "strategies", ".") for p in [ROOT / top / name]
                 if p.exists() or p.with_suffix(".py").exists()]
        assert found, f"the README's layout names {name!r}, which is not in the tree"


def test_modules_stay_small():
    sizes = {p: len(p.read_text().splitlines())
             for top in ("bench", "strategies", "reports") for p in (ROOT / top).rglob("*.py")}
    big = {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > 550}
    assert not big, f"modules over 550 lines: {big}"
