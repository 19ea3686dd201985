"""The gate's verdict: every matched pair checked, the false discovery rate held, and the
table and JSON a CI job reads. This module imports no torch."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core import stats
from bench.core.errors import GateError
from bench.core.formats import fmt
from bench.gate.checks import (
    Check,
    Rules,
    _direction,
    compare_pair,
    compare_quality,
    settings_changes,
)
from bench.gate.entries import REFERENCE_STRATEGY, Entry, read_many

VERDICT_SCHEMA = "accelbench.gate-verdict/1"
EXIT_PASS, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


@dataclass
class Verdict:
    """All checks and the exit code they add up to."""

    checks: list[Check]
    rules: Rules
    current_sources: list[str]
    baseline_sources: list[str]
    baseline_only: list[str] = field(default_factory=list)
    current_only: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "regression"]

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "error"]

    @property
    def exit_code(self) -> int:
        if self.errors:
            return EXIT_USAGE
        return EXIT_REGRESSION if self.regressions else EXIT_PASS

    @property
    def outcome(self) -> str:
        return {EXIT_PASS: "pass", EXIT_REGRESSION: "regression", EXIT_USAGE: "error"}[self.exit_code]

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": VERDICT_SCHEMA,
            "verdict": self.outcome,
            "exit_code": self.exit_code,
            "regressions": len(self.regressions),
            "rules": self.rules.as_dict(),
            "current": self.current_sources,
            "baseline": self.baseline_sources,
            "checks": [c.as_dict() for c in self.checks],
            "baseline_only": self.baseline_only,
            "current_only": self.current_only,
            "notes": self.notes,
        }



def _check_rules_apply(rules: Rules, entries: Sequence[Entry]) -> None:
    present = {m for e in entries for m in e.quality}
    for rule in rules.quality:
        if rule.metric not in present:
            have = ", ".join(sorted(present)) or "none"
            raise GateError(f"rule {rule.text!r}: no input measured {rule.metric!r} (measured: {have})")
        rule.check_direction(_direction(rule.metric, *entries))


def gate(
    current: Sequence[Entry],
    baseline: Sequence[Entry] | None,
    rules: Rules,
    current_sources: Sequence[str] = (),
    baseline_sources: Sequence[str] = (),
) -> Verdict:
    """Match ``current`` with ``baseline`` by key and run every check.

    With ``baseline=None`` only bound rules (``metric>=x``) and status apply, to ``current``.
    Raises :class:`GateError` when nothing can be compared or a rule cannot apply.
    """
    _check_rules_apply(rules, list(current) + list(baseline or []))
    checks: list[Check] = []
    verdict = Verdict(checks, rules, list(current_sources), list(baseline_sources))
    if baseline is None:
        for cur in current:
            if cur.status != "ok":
                checks.append(Check(cur.key, "status", "status", None, cur.status, None, "ok",
                                    "regression", reason=cur.error or ""))
                continue
            for rule in rules.quality:
                if rule.kind == "bound":
                    checks.append(compare_quality(None, cur, rule, reference=reference_of(current, cur)))
        if not checks:
            raise GateError("nothing to check: give --baseline, or bound rules such as adherence>=0.7")
        return verdict
    base_by_key = {e.key: e for e in baseline}
    cur_by_key = {e.key: e for e in current}
    matched = [k for k in cur_by_key if k in base_by_key]
    pairs = [(base_by_key[k], cur_by_key[k], k) for k in matched]
    _pair_by_stack(base_by_key, cur_by_key, matched, pairs)
    matched = [k for _, _, k in pairs]
    paired = {id(e) for b, c, _ in pairs for e in (b, c)}
    verdict.baseline_only = [k for k, e in base_by_key.items() if id(e) not in paired]
    verdict.current_only = [k for k, e in cur_by_key.items() if id(e) not in paired]
    if not matched:
        raise GateError(
            "nothing to compare: no benchmark appears on both sides "
            f"(baseline: {', '.join(sorted(base_by_key)) or 'none'}; "
            f"current: {', '.join(sorted(cur_by_key)) or 'none'})"
        )
    _check_pairs(verdict, pairs, current=current)
    if not verdict.checks:
        raise GateError(
            "nothing was checked: the matched entries ("
            + ", ".join(matched) + f") give no {rules.latency} check and no quality rule applies"
        )
    if verdict.baseline_only:
        verdict.notes.append("only in the baseline (not checked): " + ", ".join(verdict.baseline_only))
    return verdict


def _pair_by_stack(base_by_key: dict[str, Entry], cur_by_key: dict[str, Entry],
                   matched: Sequence[str], pairs: list[tuple[Entry, Entry, str]]) -> None:
    """Pair the unmatched entries that are one stack on both sides (one each) measured at
    another batch size, so that the settings check names the change instead of the entries
    going unchecked."""
    def unmatched(side: dict[str, Entry]) -> dict[str, list[Entry]]:
        out: dict[str, list[Entry]] = {}
        for k, e in side.items():
            if k not in matched and (stack := _same_stack(e)):
                out.setdefault(stack, []).append(e)
        return out

    base_left, cur_left = unmatched(base_by_key), unmatched(cur_by_key)
    for stack, curs in cur_left.items():
        bases = base_left.get(stack, [])
        if len(curs) == 1 and len(bases) == 1:
            pairs.append((bases[0], curs[0], stack))


def reference_of(entries: Sequence[Entry], entry: Entry) -> Entry | None:
    """The reference stack measured in ``entry``'s run (same run, model, batch size and
    device), where the entries hold it: what ``floor`` rules are resolved against."""
    def where(e: Entry) -> tuple:
        return (e.run_id, e.model, e.settings.get("batch_size"), e.settings.get("device"))

    for e in entries:
        if e.strategy == REFERENCE_STRATEGY and e.status == "ok" and where(e) == where(entry):
            return e
    return None


def _check_pairs(verdict: Verdict, pairs: Sequence[tuple[Entry, Entry, str]],
                 settings: bool = True, current: Sequence[Entry] = ()) -> None:
    """Every check of every pair; with ``settings``, a pair whose settings differ is an
    error (exit 2) unless the rules allow it, when it is compared with a note. ``current``:
    the current side's entries, where each pair's run reference is looked up."""
    for base, cur, k in pairs:
        changes = settings_changes(base, cur) if settings else []
        if changes and not verdict.rules.allow_settings_change:
            verdict.checks.append(Check(
                k, "settings", "settings", None, None, None, "same", "error",
                reason="settings differ: " + "; ".join(changes)
                       + " (rerun with the baseline's settings, or pass --allow-settings-change)"))
            continue
        if changes:
            verdict.notes.append(f"{k}: compared although settings differ: " + "; ".join(changes))
        verdict.checks.extend(compare_pair(base, cur, verdict.rules, k,
                                           reference_of(current, cur) if current else None))
    control_fdr(verdict)


def _same_stack(entry: Entry) -> str | None:
    """Model and strategy alone: entries of one stack measured at another batch size."""
    return f"{entry.model} | {entry.strategy}" if entry.model and entry.strategy else None


def control_fdr(verdict: Verdict) -> None:
    """Hold the false discovery rate of the latency checks at ``rules.alpha``
    (Benjamini-Hochberg over every latency check with a test): a slowdown or gain that is not
    a discovery among them passes, saying so."""
    tested = [c for c in verdict.checks if c.kind == "latency" and c.p_value is not None]
    if len(tested) < 2:
        return
    found = stats.benjamini_hochberg([c.p_value for c in tested], verdict.rules.alpha)
    demoted = 0
    for check, discovery in zip(tested, found, strict=True):
        if check.outcome in ("regression", "improved") and not discovery:
            check.outcome = "pass"
            check.reason += f" (not a discovery at {verdict.rules.alpha:.0%} false discovery rate)"
            demoted += 1
    verdict.notes.append(
        f"latency verdicts hold the false discovery rate at {verdict.rules.alpha:.0%} over "
        f"{len(tested)} checks (Benjamini-Hochberg)" + (f"; {demoted} not a discovery" if demoted else ""))


def gate_pairs(
    pairs: Sequence[tuple[Entry, Entry]], rules: Rules, sources: Sequence[str] = ()
) -> Verdict:
    """Check explicit (baseline, current) pairs, e.g. each candidate arm of an interleaved
    A/B job against its reference arm; keys read ``candidate vs reference``."""
    entries = [e for pair in pairs for e in pair]
    _check_rules_apply(rules, entries)
    verdict = Verdict([], rules, list(sources), list(sources))
    _check_pairs(verdict, [(b, c, f"{c.name} vs {b.name}") for b, c in pairs], settings=False,
                 current=entries)
    return verdict


def gate_against_reference(
    current: Sequence[str | os.PathLike], reference: str, rules: Rules
) -> Verdict:
    """Every stack of ``current`` against the ``reference`` stack of the same run (model,
    batch size and device); keys read ``candidate vs reference``."""
    from strategies import parse_stack  # lazy: strategies import torch, the gate does not

    spec = parse_stack(reference).spec
    entries = read_many(current)
    refs = {(e.run_id, e.model, e.settings.get("batch_size"), e.settings.get("device")): e
            for e in entries if e.strategy == spec}
    if not refs:
        raise GateError(f"no {spec!r} stack in {', '.join(map(str, current))} to compare with")
    pairs = []
    for e in entries:
        ref = refs.get((e.run_id, e.model, e.settings.get("batch_size"), e.settings.get("device")))
        if ref is not None and e is not ref:
            pairs.append((ref, e))
    if not pairs:
        raise GateError(f"nothing to compare with {spec!r}: the inputs hold no other stack of its runs")
    return gate_pairs(pairs, rules, [str(p) for p in current])


def gate_paths(
    current: Sequence[str | os.PathLike], baseline: Sequence[str | os.PathLike] | None, rules: Rules
) -> Verdict:
    """:func:`gate` over files and run directories."""
    cur = read_many(current)
    base = read_many(baseline) if baseline else None
    return gate(cur, base, rules, [str(p) for p in current], [str(p) for p in baseline or []])


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------
def _fmt(value: Any, kind: str) -> str:
    if kind == "latency":
        return fmt(value, ".2f") + (" ms" if isinstance(value, (int, float)) else "")
    if kind == "speedup":
        return fmt(value, ".2f") + ("x" if isinstance(value, (int, float)) else "")
    return fmt(value, ".4g")


def _fmt_change(check: Check) -> str:
    if check.change is None:
        return "-"
    if math.isinf(check.change):
        return "inf"
    if check.kind in ("latency", "speedup"):
        return f"{check.change:+.1%}"
    return f"{check.change:+.4g}"


_MARK = {"pass": "ok", "regression": "REGRESSION", "improved": "improved", "skipped": "skipped",
         "error": "ERROR"}


def format_table(verdict: Verdict) -> str:
    """A plain-text table of every check and the verdict line."""
    header = ("benchmark", "check", "baseline", "current", "change", "limit", "test", "result")
    rows = [header]
    for c in verdict.checks:
        test = "-"
        if c.test == "mann-whitney" and c.p_value is not None:
            test = f"MWU p={c.p_value:.3g}"
        elif c.test and c.test.startswith("sign test") and c.p_value is not None:
            test = f"paired p={c.p_value:.3g}"
        elif c.test == "probe-corrected" and c.p_value is not None:
            test = f"probe p={c.p_value:.3g}"
        elif c.test:
            test = c.test
        result = _MARK[c.outcome] + (f": {c.reason}" if c.reason else "")
        rows.append((c.key, c.metric, _fmt(c.baseline, c.kind), _fmt(c.current, c.kind),
                     _fmt_change(c), c.limit, test, result))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header) - 1)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    for note in verdict.notes:
        lines.append(f"note: {note}")
    n_reg, n_err = len(verdict.regressions), len(verdict.errors)
    summary = {
        "pass": f"PASS: {len(verdict.checks)} checks, no regression",
        "regression": f"FAIL: {n_reg} regression(s) in {len(verdict.checks)} checks",
        "error": f"ERROR: {n_err} check(s) could not be made",
    }[verdict.outcome]
    lines.append(summary)
    return "\n".join(lines)


def write_verdict(verdict: Verdict, path: str | os.PathLike) -> Path:
    """Write the machine-readable verdict."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(verdict.as_dict(), indent=1) + "\n", encoding="utf-8")
    return out


__all__ = ["EXIT_PASS", "EXIT_REGRESSION", "EXIT_USAGE", "VERDICT_SCHEMA", "Verdict",
           "control_fdr", "format_table", "gate", "gate_against_reference", "gate_pairs",
           "gate_paths", "write_verdict"]
