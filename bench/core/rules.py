"""The one grammar of quality rules, read by the gate and by tune.

A rule is written ``metric OP value``:

* ``psnr:-1``, ``ssim:0.02``, ``fid:+10%``: a *delta*, at most that much worse than the
  baseline's value (``%``: a fraction of the baseline's magnitude); a written sign must agree
  with the metric's direction (``psnr:+1`` is refused: PSNR getting worse is a drop).
* ``adherence>=0.97``, ``fid<=40``: a *bound* the value must meet.
* ``fid<=floor``, ``adherence>=floor``: a bound at the reference's own noise: its value
  measured the same way, give or take :data:`FLOOR_SIGMAS` standard deviations of the noise
  floor recorded with it (``quality_noise_floor``). Only distribution metrics (fid, kid) and
  adherence have a floor.

Which forms a front end accepts is its choice (tune asks for bounds: a search has no
baseline value to be "worse than"); the parsing, the checks of direction and the resolution
of ``floor`` are here, once. This module imports no torch.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.core.errors import RuleError
from bench.core.formats import number
from bench.core.metrics import METRICS

#: Noise-floor standard deviations that make "within the reference's noise".
FLOOR_SIGMAS = 2.0
#: Metrics with a noise floor recorded with the reference (``quality_noise_floor``).
FLOOR_METRICS = ("fid", "kid", "adherence")

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_DELTA = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*:\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*$")
_BOUND = re.compile(rf"^\s*([A-Za-z_][\w-]*)\s*(>=|<=)\s*(floor|{_NUMBER})\s*$")
_FORMS = {
    "delta": "metric:-1 (at most 1 unit worse), metric:+10% (at most 10% worse)",
    "bound": "metric>=value, metric<=value or metric<=floor (within the reference's noise)",
}


@dataclass(frozen=True)
class Rule:
    """One parsed rule.

    Attributes:
        metric: the metric's name.
        kind: ``delta`` (against the baseline's value) or ``bound``.
        amount: the delta's size, or the bound's value (None for ``floor``).
        relative: a delta in percent of the baseline's magnitude.
        sign: the delta's written sign (+1, -1, or 0 for none).
        op: ``>=`` or ``<=`` for a bound.
        text: the rule as written.
    """

    metric: str
    kind: str
    amount: float | None
    relative: bool = False
    sign: int = 0
    op: str | None = None
    text: str = ""

    @property
    def floor(self) -> bool:
        """A bound at the reference's noise floor (``fid<=floor``)."""
        return self.kind == "bound" and self.amount is None

    @classmethod
    def parse(cls, text: str, kinds: tuple[str, ...] = ("delta", "bound"),
              metrics: Mapping[str, Any] | None = None) -> Rule:
        """Parse one rule; ``kinds`` are the forms the caller accepts, ``metrics`` the names
        it knows (None: any name, checked later against what records declare)."""
        m = _DELTA.match(text) if "delta" in kinds else None
        if m:
            metric, sign, value, pct = m.groups()
            rule = cls(metric, "delta", float(value) / (100 if pct else 1), relative=bool(pct),
                       sign={"+": 1, "-": -1}.get(sign, 0), text=text.strip())
        else:
            m = _BOUND.match(text) if "bound" in kinds else None
            if not m:
                forms = "; ".join(_FORMS[k] for k in kinds)
                raise RuleError(f"bad quality rule {text!r}: write {forms}")
            metric, op, value = m.groups()
            rule = cls(metric, "bound", None if value == "floor" else float(value), op=op,
                       text=text.strip())
        if metrics is not None and metric not in metrics:
            close = difflib.get_close_matches(metric, list(metrics), n=2, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise RuleError(f"rule {text!r}: unknown metric {metric!r}{hint} "
                            f"(metrics: {', '.join(metrics)})")
        if rule.floor:
            if metric not in FLOOR_METRICS:
                raise RuleError(f"rule {text!r}: 'floor' is the noise band of a distribution metric "
                                f"(fid, kid) or adherence; give a number for {metric}")
            if metric in METRICS:
                rule.check_direction(METRICS[metric].higher_is_better)
        return rule

    def check_direction(self, higher_is_better: bool) -> None:
        """Refuse a written sign or a floor's side that points the metric's better way."""
        if self.floor and (self.op == ">=") != higher_is_better:
            need = ">=" if higher_is_better else "<="
            raise RuleError(f"rule {self.text!r}: {self.metric} is "
                            f"{'higher' if higher_is_better else 'lower'}-is-better, so a floor "
                            f"bounds it with {need}: {self.metric}{need}floor")
        if self.kind != "delta" or self.sign == 0:
            return
        if self.sign != (-1 if higher_is_better else 1):
            word = "drop" if higher_is_better else "rise"
            direction = "higher" if higher_is_better else "lower"
            amount = self.text.split(":", 1)[1].strip().lstrip("+-")
            raise RuleError(f"rule {self.text!r}: {self.metric} is {direction}-is-better, so "
                            f"getting worse is a {word}; write "
                            f"{self.metric}:{'-' if higher_is_better else '+'}{amount}")

    def bound(self, reference: Mapping[str, Any] | None = None) -> float | None:
        """The numeric bound of a bound rule; for ``floor``, from ``reference`` (a record of
        the unaccelerated model measured the same way: its ``quality`` and
        ``quality_noise_floor``). None where the reference does not give one."""
        if self.kind != "bound":
            raise RuleError(f"rule {self.text!r} is a delta: it has no bound of its own")
        if self.amount is not None:
            return self.amount
        if not reference:
            return None
        value = number((reference.get("quality") or {}).get(self.metric))
        std = number(((reference.get("quality_noise_floor") or {}).get(self.metric) or {}).get("std"))
        if value is None or std is None:
            return None
        return value + FLOOR_SIGMAS * std if self.op == "<=" else value - FLOOR_SIGMAS * std

    def violation(self, value: float | None, bound: float | None) -> float:
        """How far ``value`` is on the wrong side of ``bound`` (<= 0: met; inf: unknown)."""
        if value is None or bound is None or math.isnan(value):
            return math.inf
        return (bound - value) if self.op == ">=" else (value - bound)

    def holds(self, value: float | None, bound: float | None) -> bool:
        """Whether ``value`` meets ``bound`` (a NaN or missing value never does)."""
        return self.violation(value, bound) <= 0


def parse_fraction(text: str | float, what: str = "threshold") -> float:
    """``10%`` or ``0.10`` -> 0.10; anything else is a :class:`RuleError`."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip()
        try:
            value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
        except ValueError:
            raise RuleError(f"bad {what} {text!r}: write 10% or 0.10") from None
        if not s.endswith("%") and value >= 1:
            raise RuleError(f"bad {what} {text!r}: a fraction below 1 (0.10) or a percentage (10%)")
    if not (0 <= value < 10) or math.isnan(value):
        raise RuleError(f"bad {what} {text!r}: must be between 0 and 1000%")
    return value


__all__ = ["FLOOR_METRICS", "FLOOR_SIGMAS", "Rule", "parse_fraction"]
