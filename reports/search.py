"""The report's search section: every trial of ``accelbench tune`` as a cloud, the front, the
constraint lines, and the candidates measured in full.

It reads the ``tune.json`` a search writes into its folder; nothing here imports torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.formats import number
from reports.plots.style import DOMINATED_COLOR, FRONT_COLOR, Plot, figure, finish, short, style

TUNE_FILE = "tune.json"
FEASIBLE_COLOR = "#2a9d6f"
INFEASIBLE_COLOR = "#d1495b"
TRIALS_CAPTION = (
    "Each dot is one trial measured cheaply (green: met every constraint; red: did not; grey: "
    "no constraint). Stars: the candidates measured in full, interleaved with the baseline. "
    "Dashed: the constraint's bound."
)


@dataclass
class SearchSection:
    """What the report shows of one search."""

    title: str
    facts: list[tuple[str, str]]
    plots: list[Plot] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)


def load(run_dir: Path) -> dict[str, Any] | None:
    """The search summary in ``run_dir``, or None."""
    path = Path(run_dir) / TUNE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if str(data.get("schema", "")).startswith("accelbench.tune/") else None


def _x_label(objective: str) -> str:
    return {"latency": "latency relative to the baseline (1 / speedup): lower is better",
            "energy": "energy per image (J): lower is better",
            "memory": "peak memory (MiB): lower is better"}.get(objective, objective)


def _metrics(tune: dict[str, Any]) -> list[str]:
    """The quality metrics drawn: the constrained ones, else the ones the trials measured."""
    constraints = (tune.get("config") or {}).get("constraints") or []
    named = [c.replace(">=", " ").replace("<=", " ").split()[0] for c in constraints]
    if named:
        return list(dict.fromkeys(named))
    seen: list[str] = []
    for t in tune.get("trials") or []:
        for k in t.get("quality") or {}:
            if k in ("psnr", "adherence", "fid") and k not in seen:
                seen.append(k)
    return seen


def trials_plot(tune: dict[str, Any], metric: str) -> Plot | None:
    """Every measured trial: objective against ``metric``, feasible ones green, the
    candidates measured in full as stars, the constraint's bound as a line."""
    objective = (tune.get("config") or {}).get("objective", "latency")
    pts = []
    for t in tune.get("trials") or []:
        if t.get("state") != "complete":
            continue
        x, y = number(t.get("objective")), number((t.get("quality") or {}).get(metric))
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)) or x >= 1e11:
            continue
        pts.append((x, y, t))
    if not pts:
        return None
    bounds = tune.get("bounds") or {}
    lines = [(text, number(b)) for text, b in bounds.items() if text.split("<")[0].split(">")[0].strip() == metric]
    full = {c["stack"]: c for c in tune.get("candidates") or []}
    with style():
        fig, ax = figure(6.4, 4.2)
        for x, y, t in pts:
            feasible = t.get("feasible")
            color = DOMINATED_COLOR if feasible is None else FEASIBLE_COLOR if feasible else INFEASIBLE_COLOR
            ax.scatter([x], [y], s=22, color=color, alpha=0.75, zorder=2, linewidths=0)
        for stack, c in full.items():
            x = number(c.get("objective"))
            y = number((c.get("quality") or {}).get(metric))
            if x is None or y is None or not math.isfinite(y):
                continue
            ax.scatter([x], [y], s=140, marker="*", color=FRONT_COLOR, zorder=3, edgecolors="white")
            ax.annotate(short(stack, 28), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
        for text, bound in lines:
            if bound is not None and math.isfinite(bound):
                ax.axhline(bound, color="#444", linestyle="--", linewidth=1)
                ax.annotate(text, (1.0, bound), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                            textcoords="offset points", ha="right", fontsize=7, color="#444")
        ax.set_xlabel(_x_label(objective), fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        ax.set_title(f"{len(pts)} trials: {objective} vs {metric}")
        return finish(fig, kind="search", title=f"Search: {objective} vs {metric}", caption=TRIALS_CAPTION,
                      alt=f"Every trial of the search, {objective} against {metric}")


def section(tune: dict[str, Any], run_label: str) -> SearchSection:
    """The search section of one tune folder."""
    cfg = tune.get("config") or {}
    trials = tune.get("trials") or []
    facts = [
        ("model", str(cfg.get("model"))),
        ("objective", str(cfg.get("objective"))),
        ("constraints", ", ".join(cfg.get("constraints") or []) or "none (Pareto front)"),
        ("trials", f"{len(trials)} ({sum(t['state'] == 'complete' for t in trials)} measured, "
                   f"{sum(t['state'] == 'pruned' for t in trials)} rejected before measuring, "
                   f"{sum(t['state'] == 'fail' for t in trials)} failed)"),
        ("wall time", f"{(number(tune.get('seconds')) or 0) / 60:.1f} min"),
    ]
    best = tune.get("best")
    if best:
        facts.append(("best", f"{best['stack']}: {number(best['speedup']):.2f}\u00d7 "
                              f"[{number(best['ci_low']):.2f}, {number(best['ci_high']):.2f}]"))
    plots = [p for m in _metrics(tune) if (p := trials_plot(tune, m)) is not None]
    return SearchSection(title=f"Search ({run_label})", facts=facts, plots=plots,
                         candidates=list(tune.get("candidates") or []))


__all__ = ["SearchSection", "load", "section", "trials_plot"]
