"""The gate's checks of one matched pair: latency, speedup, quality rules and status.

:class:`Rules` say what counts as a regression; each ``compare_*`` returns one
:class:`Check`. Quality rules are :class:`bench.core.rules.Rule` (the grammar tune reads
too). This module imports no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench.core import compare, stats
from bench.core.config import COMPARED_SETTINGS
from bench.core.errors import GateError
from bench.core.formats import sanitize
from bench.core.metrics import METRICS
from bench.core.rules import Rule
from bench.gate.entries import REFERENCE_STRATEGY, Entry

#: Significance level of the latency tests unless configured.
DEFAULT_ALPHA = 0.05
#: Relative slowdown allowed unless configured.
DEFAULT_MAX_SLOWDOWN = 0.10
#: Rounds two interleaved stacks must share for the paired test.
MIN_PAIRED_ROUNDS = compare.MIN_PAIRED_ROUNDS
#: A quality rule of the gate: any form of the one rule grammar.
QualityRule = Rule


@dataclass(frozen=True)
class Rules:
    """What counts as a regression.

    Attributes:
        latency: ``absolute`` (compare latencies), ``speedup`` (compare speedups over each
            side's own reference) or ``off``.
        max_slowdown: relative slowdown tolerated (0.10 = 10%).
        alpha: significance level of the latency test.
        quality: quality rules.
        test: ``auto`` (two arms of one interleaved job are compared round by round: the
            sign test on the per-round log ratios; separate runs through their probes;
            otherwise Mann-Whitney U) or ``mann-whitney`` (never paired).
    """

    latency: str = "absolute"
    max_slowdown: float = DEFAULT_MAX_SLOWDOWN
    alpha: float = DEFAULT_ALPHA
    #: The practical margin of "equivalent" (+-5%).
    margin: float = 0.05
    quality: tuple[QualityRule, ...] = ()
    test: str = "auto"
    #: Compare entries whose settings differ (:data:`COMPARED_SETTINGS`) instead of refusing.
    allow_settings_change: bool = False

    def __post_init__(self) -> None:
        if self.latency not in ("absolute", "speedup", "off"):
            raise GateError(f"latency mode must be absolute, speedup or off, got {self.latency!r}")
        if not 0 < self.alpha < 1:
            raise GateError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.max_slowdown < 0:
            raise GateError(f"max slowdown must be >= 0, got {self.max_slowdown}")
        if self.test not in ("auto", "mann-whitney"):
            raise GateError(f"test must be auto or mann-whitney, got {self.test!r}")

    def as_dict(self) -> dict[str, Any]:
        return {"latency": self.latency, "max_slowdown": self.max_slowdown, "alpha": self.alpha,
                "test": self.test, "quality": [r.text for r in self.quality],
                "allow_settings_change": self.allow_settings_change}


# ---------------------------------------------------------------------------------------
# Comparisons and the verdict
# ---------------------------------------------------------------------------------------
@dataclass
class Check:
    """One check of one matched pair: its numbers and its outcome.

    ``outcome`` is ``pass``, ``regression``, ``improved`` (significantly better), ``skipped``
    (nothing to compare, with the reason) or ``error`` (cannot be compared: exit 2).
    """

    key: str
    kind: str  # latency | speedup | quality | status
    metric: str
    baseline: float | str | None
    current: float | str | None
    change: float | None
    limit: str
    outcome: str
    test: str | None = None
    p_value: float | None = None
    significant: bool | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return sanitize(asdict(self))



def _direction(metric: str, *entries: Entry) -> bool:
    """``higher_is_better`` of ``metric`` from the entries' quality_meta, else the registry."""
    for e in entries:
        meta = e.quality_meta.get(metric)
        if isinstance(meta, dict) and meta.get("higher_is_better") is not None:
            return bool(meta["higher_is_better"])

    if metric in METRICS:
        return METRICS[metric].higher_is_better
    raise GateError(f"{metric!r} has no declared direction (higher_is_better) in the inputs")


def compare_latency(base: Entry, cur: Entry, rules: Rules, key: str | None = None) -> Check:
    """Absolute latency check of one pair, through :func:`bench.core.compare.latency_change`: two
    stacks of one interleaved run are compared round by round (the sign test on the per-round
    ratios, which cancels the machine's drift; with ``rules.test == "mann-whitney"`` they are
    not paired), separate runs through their machine-speed probes, others on their raw samples
    (Mann-Whitney U) or, without raw samples, by whether their 95% intervals are apart. A
    regression is slower by more than ``max_slowdown`` and called ``slower``.
    """
    key = key or cur.key
    limit = f"+{rules.max_slowdown:.0%}"
    if not base.latency_ms or not cur.latency_ms:
        return Check(key, "latency", "latency_ms", None, None, None, limit, "skipped",
                     reason="no latency on one side")
    b, c = base.latency_ms["median"], cur.latency_ms["median"]
    bs, cs = base.samples(), cur.samples()
    if rules.test == "mann-whitney":  # never paired
        bs, cs = replace(bs, run_id=None), replace(cs, run_id=None)
    change = compare.latency_change(bs, cs, rules.alpha, rules.margin)
    if change is None:
        return Check(key, "latency", "latency_ms", b, c, None, limit, "skipped",
                     reason="latencies cannot be compared")
    test = {stats.PAIRED: f"sign test ({change.n} paired rounds)",
            stats.PROBED: "probe-corrected",
            stats.INDEPENDENT: "mann-whitney"}.get(change.method, "ci-overlap")
    p = None if math.isnan(change.p_value) else change.p_value
    slowdown = change.change
    slower, faster = change.verdict == "slower", change.verdict == "faster"
    machine = ""
    if change.method == stats.PROBED:
        moved = stats.machine_change(bs.probe_s, cs.probe_s)  # type: ignore[arg-type]
        machine = (f"; the machine was {abs(moved):.0%} {'slower' if moved > 0 else 'faster'} "
                   "during the current run (its probe), divided out")
    outcome, reason = _outcome(slowdown, rules.max_slowdown, slower, faster, (
        f"{slowdown:+.1%} slower ({change.verdict}){machine}",
        f"{slowdown:+.1%} but {change.verdict}{machine}",
        f"{-slowdown:.1%} faster{machine}", change.verdict + machine))
    return Check(key, "latency", "latency_ms", b, c, slowdown, limit, outcome, test, p,
                 change.significant, reason)


def _outcome(slowdown: float, limit: float, worse: bool, better: bool,
             reasons: tuple[str, str, str, str]) -> tuple[str, str]:
    """The outcome of a latency or speedup check: a regression only beyond ``limit`` *and*
    shown worse by the test; ``reasons`` for regression, too small to tell, improved, pass."""
    if slowdown > limit:
        return ("regression", reasons[0]) if worse else ("pass", reasons[1])
    if better and -slowdown > limit:
        return "improved", reasons[2]
    return "pass", reasons[3]


def compare_speedup(base: Entry, cur: Entry, rules: Rules, key: str | None = None) -> Check:
    """Speedup check of one pair: the strategy's gain over its own run's reference."""
    key = key or cur.key
    limit = f"{1 / (1 + rules.max_slowdown) - 1:+.1%}"
    if not base.speedup or not cur.speedup:
        return Check(key, "speedup", "speedup", None, None, None, limit, "skipped",
                     reason="no speedup over a reference on one side")
    b, c = float(base.speedup["ratio"]), float(cur.speedup["ratio"])
    slowdown = b / c - 1  # how much slower, relative to its reference, the strategy got
    b_low = base.speedup.get("ci_low")
    b_high = base.speedup.get("ci_high")
    c_low, c_high = cur.speedup.get("ci_low"), cur.speedup.get("ci_high")
    b_low = b if b_low is None else float(b_low)
    b_high = b if b_high is None else float(b_high)
    worse = c_high is not None and float(c_high) < b_low
    better = c_low is not None and float(c_low) > b_high
    change = f"speedup {b:.2f}x -> {c:.2f}x"
    outcome, reason = _outcome(slowdown, rules.max_slowdown, worse, better, (
        f"{change}, intervals apart", f"{change} but intervals overlap",
        f"{change}, intervals apart", ""))
    # The change shown is the speedup's own (+: the stack gained); the limit is the same rule
    # seen from that side: a drop beyond it means the stack became max_slowdown slower.
    return Check(key, "speedup", "speedup", b, c, c / b - 1, limit, outcome, "ci-overlap", None,
                 worse or better, reason)


def compare_quality(base: Entry | None, cur: Entry, rule: QualityRule, key: str | None = None,
                    reference: Entry | None = None) -> Check:
    """One quality rule on one pair (``base`` may be None for bound rules). ``reference`` is
    the current run's reference entry, which ``floor`` bounds are resolved against."""
    key = key or cur.key
    hib = _direction(rule.metric, cur, *(e for e in (base,) if e is not None))
    rule.check_direction(hib)
    c = cur.quality.get(rule.metric)
    if c is None or math.isnan(c):
        return _missing_quality(base, cur, rule, key, c)
    if rule.kind == "bound":
        return _bound_check(cur, rule, key, c, reference)
    if base is None:
        return Check(key, "quality", rule.metric, None, c, None, rule.text, "skipped",
                     reason="no baseline entry")
    if base.fingerprint and cur.fingerprint and base.fingerprint != cur.fingerprint:
        return Check(key, "quality", rule.metric, base.quality.get(rule.metric), c, None, rule.text,
                     "error", reason=f"model weights or call settings differ (baseline {base.fingerprint}, "
                     f"current {cur.fingerprint}): the quality baseline is stale; refresh it")
    b = base.quality.get(rule.metric)
    if b is None or math.isnan(b):
        return Check(key, "quality", rule.metric, None, c, None, rule.text, "skipped",
                     reason=f"{rule.metric} not measured in baseline")
    if b == c:
        worsening = 0.0
    else:
        worsening = (b - c) if hib else (c - b)  # inf when an infinite value became finite
    allowed = rule.amount * abs(b) if rule.relative else rule.amount
    if math.isinf(b) and b == c:
        allowed = 0.0
    change = c - b if math.isfinite(b) and math.isfinite(c) else worsening
    bad = worsening > allowed + 1e-12
    if bad:
        outcome = "regression"
    elif math.isfinite(worsening) and -worsening > allowed:
        outcome = "improved"
    else:
        outcome = "pass"
    reason = f"{rule.metric} worse by {worsening:.4g} (allowed {allowed:.4g})" if bad else ""
    return Check(key, "quality", rule.metric, b, c, change, rule.text, outcome, reason=reason)


def _bound_check(cur: Entry, rule: QualityRule, key: str, value: float,
                 reference: Entry | None) -> Check:
    """A bound rule on the current value; ``floor`` taken from the run's reference entry."""
    ref = reference if reference is not None else (cur if cur.strategy == REFERENCE_STRATEGY else None)
    bound = rule.bound({"quality": ref.quality, "quality_noise_floor": ref.noise_floor}
                       if ref is not None else None)
    if bound is None:
        return Check(key, "quality", rule.metric, None, value, None, rule.text, "skipped",
                     reason=f"no noise floor of {rule.metric} recorded with the run's reference "
                            "to resolve 'floor' (measure it with quality images)")
    ok = rule.holds(value, bound)
    limit = rule.text if not rule.floor else f"{rule.text} ({rule.op}{bound:.4g})"
    return Check(key, "quality", rule.metric, None, value, None, limit,
                 "pass" if ok else "regression",
                 reason="" if ok else f"{rule.metric} {value:.4g} not {rule.op} {bound:.4g}")


def _missing_quality(base: Entry | None, cur: Entry, rule: QualityRule, key: str,
                     value: float | None) -> Check:
    """A quality rule whose metric is NaN or absent in ``cur``: a regression when the
    baseline had a finite value (a metric that stops being a number is not a pass), or when
    a bound cannot be shown to hold because the value is NaN; skipped otherwise."""
    what = "NaN" if value is not None else "missing"
    b = base.quality.get(rule.metric) if base is not None else None
    if b is not None and not math.isnan(b):
        return Check(key, "quality", rule.metric, b, value, None, rule.text, "regression",
                     reason=f"{rule.metric} is {what} in current (baseline {b:.4g})")
    if rule.kind == "bound" and value is not None:
        return Check(key, "quality", rule.metric, None, value, None, rule.text, "regression",
                     reason=f"{rule.metric} is NaN: {rule.text} cannot hold")
    return Check(key, "quality", rule.metric, None, value, None, rule.text, "skipped",
                 reason=f"{rule.metric} not measured in current"
                        + ("" if base is None else " nor in the baseline"))




def settings_changes(base: Entry, cur: Entry) -> list[str]:
    """The compared settings recorded on both sides that differ, as ``name (baseline a,
    current b)``."""
    out = []
    for name in COMPARED_SETTINGS:
        a, b = base.settings.get(name), cur.settings.get(name)
        if a is not None and b is not None and a != b:
            out.append(f"{name} (baseline {a}, current {b})")
    return out


def _status_check(base: Entry, cur: Entry, key: str) -> Check | None:
    if base.status == "ok" and cur.status != "ok":
        return Check(key, "status", "status", base.status, cur.status, None, "ok", "regression",
                     reason=cur.error or "")
    if base.status != "ok" and cur.status != "ok":
        return Check(key, "status", "status", base.status, cur.status, None, "ok", "skipped",
                     reason=f"not ok on either side: {cur.error or ''}")
    return None


def compare_pair(base: Entry, cur: Entry, rules: Rules, key: str | None = None,
                 reference: Entry | None = None) -> list[Check]:
    """Every check of one matched pair (``reference``: the current run's reference entry)."""
    key = key or cur.key
    status = _status_check(base, cur, key)
    if status is not None:
        return [status]
    checks: list[Check] = []
    if cur.status == "ok" and base.status == "ok":
        if rules.latency == "absolute":
            checks.append(compare_latency(base, cur, rules, key))
        elif rules.latency == "speedup" and cur.strategy != REFERENCE_STRATEGY:
            checks.append(compare_speedup(base, cur, rules, key))
    for rule in rules.quality:
        checks.append(compare_quality(base, cur, rule, key, reference))
    return checks




__all__ = ["COMPARED_SETTINGS", "DEFAULT_ALPHA", "DEFAULT_MAX_SLOWDOWN", "Check", "QualityRule",
           "Rules", "compare_latency", "compare_pair", "compare_quality", "compare_speedup",
           "settings_changes"]
