"""Where accelbench keeps things between runs: baseline images, trained strategy weights.

``$ACCELBENCH_CACHE`` if set, else ``$XDG_CACHE_HOME/accelbench``, else
``~/.cache/accelbench``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The cache folder (created), or a sub-folder of it."""
    root = os.environ.get("ACCELBENCH_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "accelbench"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
