"""The strategy x architecture compatibility matrix: does technique X work on architecture Y,
and what does it buy there?

Every strategy (default parameters) and a few obvious stacks run on every architecture model
through the engine, one run per model (all its stacks interleaved, at least 8 paired rounds).
Each cell is ``ok`` (with the speedup over the same model's baseline, its verdict - faster,
slower, equivalent or inconclusive, the false discovery rate held over every cell of the
matrix - and the PSNR against the baseline, a numerical deviation on random weights),
``same`` (the stack leaves the model as it is: not timed), ``unsupported`` (the strategy's own
reason) or ``failed`` (the error). The
result is ``matrix.json``, ``matrix.md`` (the table, then every reason) and one run
directory per model (``accelbench report DIR/*/`` draws them).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.core.compare import verdicts
from bench.core.config import RunConfig, TimingConfig
from bench.core.formats import number, sanitize, slug
from bench.core.quality_config import QualityConfig
from bench.core.record import REFERENCE, Record, Speedup
from bench.measure.engine import Engine, EngineError
from bench.models import arch
from strategies import parse_stack
from strategies.core.registry import names

#: Stacks measured besides every strategy on its own: bf16 under regional compilation (each
#: repeated block compiled once, the way full-size models are compiled to keep compiles
#: short), next to ``compile``'s whole-denoiser program. A second whole-denoiser compile
#: (``bf16+compile``) cost about 100 s per UNet on a 2-core CPU, where compiling was half of
#: the matrix's time; it and ``quant+compile`` (int8 weights pay on the CPU only compiled)
#: are left to ``-s``.
EXTRA_STACKS = ("bf16+compile:scope=blocks",)
SCHEMA = "accelbench.matrix/1"
README_START = "<!-- matrix:start -->"
README_END = "<!-- matrix:end -->"


@dataclass
class Cell:
    """One (model, stack) outcome."""

    model: str
    strategy: str
    status: str
    speedup: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    significant: bool | None = None
    psnr: float | None = None
    #: Quality images identical to the baseline's, of how many (PSNR averages the others).
    identical: tuple[int, int] | None = None
    reason: str | None = None
    caveats: tuple[str, ...] = ()
    p_value: float | None = None
    ci_level: float | None = None
    method: str | None = None
    #: faster, slower, equivalent or inconclusive, over every cell of the matrix at once.
    verdict: str | None = None

    def short(self) -> str:
        """The table's text: ``1.93x faster, 31 dB``, ``same``, ``n/a`` or ``FAILED``."""
        if self.status == "ok":
            sp = "-" if self.speedup is None else f"{self.speedup:.2f}x" + (f" {self.verdict}" if self.verdict else "")
            db = "" if self.psnr is None else (", exact" if math.isinf(self.psnr) else f", {self.psnr:.0f} dB")
            if self.identical and 0 < self.identical[0] < self.identical[1]:
                db += f" ({self.identical[0]}/{self.identical[1]} identical)"
            return sp + db + (" \u2020" if self.caveats else "")
        if self.status == "same":
            return "same as baseline"
        return "n/a" if self.status == "unsupported" else "FAILED"

    def speedup_dict(self) -> dict[str, Any] | None:
        """The cell's speedup as a record holds it (for :func:`bench.core.compare.verdicts`)."""
        if self.status != "ok" or self.speedup is None:
            return None
        return {"ratio": self.speedup, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p_value": self.p_value, "significant": self.significant,
                "ci_level": self.ci_level, "method": self.method}


def judge(cells: Sequence[Cell]) -> list[Cell]:
    """Give every ``ok`` cell its verdict, the false discovery rate held over all of them."""

    for cell, word in zip(cells, verdicts([c.speedup_dict() for c in cells]), strict=True):
        cell.verdict = word
    return list(cells)


def default_models() -> list[str]:
    """Every ``arch:`` family's tiny variant."""

    return [n for n in arch.names() if n.endswith(arch.TINY_SUFFIX)]


def default_strategies() -> list[str]:
    """Every registered strategy with its default parameters, then :data:`EXTRA_STACKS`."""

    return [n for n in names() if n != REFERENCE] + list(EXTRA_STACKS)


def _cells_from_records(model: str, records: list[dict[str, Any]]) -> list[Cell]:
    cells = []
    for r in records:
        rec = Record.from_dict(r)
        if rec.is_reference:
            continue
        sp = rec.speedup or Speedup(None)
        status, reason = rec.status, rec.error
        compiled = rec.cold_costs.get("compiles")
        if status == "ok" and "compile" in r["strategy"] and not compiled:
            # A compile that compiled nothing measured eager code under compile's name.
            status = "failed"
            reason = "compile ran, but no call compiled anything (cold.compiles is 0)"
        cells.append(Cell(
            model=model, strategy=r["strategy"], status=status,
            speedup=sp.ratio, ci_low=sp.ci_low, ci_high=sp.ci_high, significant=sp.significant,
            psnr=number((rec.quality or {}).get("psnr")), identical=_identical(r), reason=reason,
            caveats=tuple(rec.caveats), p_value=sp.p_value,
            ci_level=sp.ci_level, method=sp.method,
        ))
    return cells


def _identical(record: dict[str, Any]) -> tuple[int, int] | None:
    """(identical quality images, quality images) of a record, where recorded."""
    psnr = ((record.get("quality_details") or {}).get("psnr")) or {}
    if "identical_images" not in psnr:
        return None
    return int(psnr["identical_images"]), int(psnr["images"])


def refused_cells(model: str, stacks: Sequence[str], message: str) -> list[Cell]:
    """Cells of a model whose every stack the engine refused (its message lists them)."""

    reasons = dict(re.findall(r"^ +(\S.*?): (.*)$", message, flags=re.M))
    out = []
    for spec in stacks:
        canonical = parse_stack(spec).spec
        out.append(Cell(model, canonical, "unsupported", reason=reasons.get(canonical, message)))
    return out


def run_matrix(models: Sequence[str], stacks: Sequence[str], out_dir: Path, *, device: str = "cpu",
               iterations: int = 8, warmup: int = 2, quality_images: int = 2,
               threads: int | None = None, log: Callable[[str], None] | None = None,
               show_progress: bool = True) -> list[Cell]:
    """Measure ``stacks`` on each of ``models`` and write the matrix to ``out_dir``."""

    log = log or (lambda msg: None)
    out_dir = Path(out_dir)
    cells: list[Cell] = []
    started = time.perf_counter()
    for model in models:
        log(f"== {model}: {len(stacks)} stacks")
        # Each model compiles from scratch: torch.compile would otherwise reuse the code it
        # compiled for a model before whose blocks are the same (FLUX.2 [dev] and [klein]
        # tiny), and the cell would show no compile and no compile cost.
        torch._dynamo.reset()
        config = RunConfig(
            model=model, strategies=(REFERENCE, *stacks), device=device, batch_size=1,
            timing=TimingConfig(warmup=warmup, min_iterations=iterations, min_seconds=0,
                                max_iterations=iterations),
            quality_images=quality_images, out_dir=out_dir / slug(model), threads=threads,
            quality=QualityConfig(noise_floor_seeds=0, distribution_metrics=False),
            count_flops=False,
        )
        t0 = time.perf_counter()
        try:
            result = Engine(config, log=log, show_progress=show_progress).run()
            cells += _cells_from_records(model, result.records)
        except EngineError as exc:
            cells += refused_cells(model, stacks, str(exc))
        except Exception as exc:  # noqa: BLE001 - a model that cannot run fails its row, not the matrix
            error = f"{type(exc).__name__}: {exc}"
            cells += [Cell(model, s, "failed", reason=error) for s in stacks]
        log(f"   {model}: {time.perf_counter() - t0:.0f} s")
    judge(cells)
    write(cells, out_dir, {"models": list(models), "stacks": list(stacks), "device": device,
                           "iterations": iterations, "warmup": warmup,
                           "seconds": time.perf_counter() - started})
    return cells


def write(cells: Sequence[Cell], out_dir: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    """``matrix.json`` and ``matrix.md`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, **meta, "cells": [asdict(c) for c in cells]}
    json_path = out_dir / "matrix.json"
    json_path.write_text(json.dumps(sanitize(doc), indent=1) + "\n", encoding="utf-8")
    md_path = out_dir / "matrix.md"
    md_path.write_text(markdown(cells, reasons=True), encoding="utf-8")
    return json_path, md_path


def read(path: Path) -> list[Cell]:
    """The cells of a ``matrix.json``."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not an accelbench matrix ({doc.get('schema')!r})")
    out = []
    for c in doc["cells"]:
        c = dict(c)
        for key in ("speedup", "ci_low", "ci_high", "psnr", "p_value", "ci_level"):
            c[key] = number(c.get(key))
        c["caveats"] = tuple(c.get("caveats") or ())
        c["identical"] = tuple(c["identical"]) if c.get("identical") else None
        out.append(Cell(**c))
    return out


def markdown(cells: Sequence[Cell], reasons: bool = False) -> str:
    """A Markdown table, strategies down, models across; with ``reasons``, every
    ``unsupported`` and ``failed`` cell's reason below it."""
    models = list(dict.fromkeys(c.model for c in cells))
    stacks = list(dict.fromkeys(c.strategy for c in cells))
    by = {(c.model, c.strategy): c for c in cells}
    short = [m.removeprefix("arch:") for m in models]
    lines = ["| strategy | " + " | ".join(short) + " |", "|---|" + "---|" * len(models)]
    for s in stacks:
        row = [by[(m, s)].short() if (m, s) in by else "" for m in models]
        lines.append(f"| `{s}` | " + " | ".join(row) + " |")
    counts = {k: sum(c.status == k for c in cells) for k in ("ok", "same", "unsupported", "failed")}
    words = {w: sum(c.verdict == w for c in cells if c.status == "ok")
             for w in ("faster", "slower", "equivalent", "inconclusive")}
    lines += ["", f"{counts['ok']} ok ({words['faster']} faster, {words['slower']} slower, "
                  f"{words['equivalent']} equivalent, {words['inconclusive']} inconclusive), "
                  f"{counts['same']} same as baseline (not timed), {counts['unsupported']} not "
                  f"applicable (n/a), {counts['failed']} failed. Speedup over the same model's "
                  "baseline, paired by round; faster/slower: its 95% interval excludes no change "
                  f"and the sign test agrees, the false discovery rate held at 5% over the "
                  f"{counts['ok']} cells (Benjamini-Hochberg); equivalent: the whole interval "
                  "within +-5%; inconclusive: neither. PSNR against the baseline's images "
                  "(random weights: numerical deviation; exact: identical output). \u2020: "
                  "speedup not representative on random weights."]
    if reasons:
        lines += ["", "## Why not", ""]
        for c in cells:
            if c.status not in ("ok",):
                lines.append(f"- `{c.strategy}` on {c.model.removeprefix('arch:')}: {c.status}: {c.reason}")
        notes = [c for c in cells if c.caveats]
        if notes:
            lines += ["", "## Caveats", ""]
            lines += [f"- `{c.strategy}` on {c.model.removeprefix('arch:')}: {'; '.join(c.caveats)}"
                      for c in notes]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, cells: Sequence[Cell], command: str) -> None:
    """Replace the table between the README's matrix markers."""
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} block to replace")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    block = f"{README_START}\n<!-- regenerated by: {command} -->\n\n{markdown(cells)}\n{README_END}"
    readme.write_text(head + block + tail, encoding="utf-8")


__all__ = ["EXTRA_STACKS", "Cell", "default_models", "default_strategies", "markdown", "read", "refused_cells",
           "run_matrix", "update_readme", "write"]
