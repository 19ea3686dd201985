"""CPU package energy from RAPL through the Linux powercap interface.

Each CPU package appears as a top-level zone ``/sys/class/powercap/intel-rapl:N`` (AMD Zen
uses the same driver and names) whose ``name`` is ``package-N``. ``energy_uj`` is a
microjoule counter that wraps at ``max_energy_range_uj`` (every few minutes under load), so
readings go through :class:`~bench.measure.samplers.timeseries.Counter`. Since Linux 5.10 the
counter is readable by root only (CVE-2020-8694, the PLATYPUS side channel); where it is
not readable the reader says so and what to do.

The package counter covers every process on the socket(s), not this process alone.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure.samplers.timeseries import Counter

DEFAULT_ROOT = Path("/sys/class/powercap")

#: What the package counter measures, recorded with every RAPL energy figure.
SCOPE = "CPU package(s) via RAPL: every process on the socket(s), not this process alone"


@dataclass
class Zone:
    """One package zone and the counter that unwraps its readings."""

    name: str
    path: Path
    counter: Counter = field(repr=False)

    def read_raw(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


class RAPLReader:
    """Sums the package zones' energy counters into joules since :meth:`open`.

    Args:
        root: the powercap directory (a temporary tree in tests).
    """

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        self.zones: list[Zone] = []
        #: Why the last read failed, if it did.
        self.error: str | None = None

    def open(self) -> str | None:
        """Find and read the package zones once; returns why RAPL is unusable, or None."""
        self.zones = []
        if not self.root.is_dir():
            return (
                f"no RAPL powercap interface ({self.root} is absent: not Linux on x86, or a "
                "VM or container that hides it)"
            )
        candidates = sorted(
            p for p in self.root.iterdir() if p.name.startswith("intel-rapl:") and p.name.count(":") == 1
        )
        for path in candidates:
            try:
                name = (path / "name").read_text().strip()
            except OSError:
                continue
            if not name.startswith("package"):
                continue
            try:
                modulus = int((path / "max_energy_range_uj").read_text().strip())
            except (OSError, ValueError):
                modulus = None
            zone = Zone(name, path, Counter(scale=1e-6, modulus=modulus))
            try:
                zone.counter.update(zone.read_raw())
            except PermissionError:
                return (
                    f"{path / 'energy_uj'} is not readable: root only since Linux 5.10 "
                    "(CVE-2020-8694); `sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj` "
                    "allows it"
                )
            except (OSError, ValueError) as exc:
                return f"{path / 'energy_uj'} could not be read: {exc}"
            self.zones.append(zone)
        if not self.zones:
            return f"no RAPL package zone under {self.root}"
        return None

    def read(self) -> float:
        """Joules used by all packages since :meth:`open`; NaN if a zone could not be read."""
        total = 0.0
        for zone in self.zones:
            try:
                total += zone.counter.update(zone.read_raw())
            except (OSError, ValueError) as exc:
                self.error = f"{zone.path / 'energy_uj'}: {exc}"
                return math.nan
        return total

    @property
    def wraps(self) -> int:
        """Counter wrap-arounds seen so far, over all zones."""
        return sum(z.counter.wraps for z in self.zones)


__all__ = ["DEFAULT_ROOT", "SCOPE", "RAPLReader", "Zone"]
