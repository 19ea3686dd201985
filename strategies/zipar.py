"""ZipAR: training-free parallel decoding over the rows of the image-token grid.

Autoregressive image models write tokens in raster order, row after row, one forward pass
per token. Images are local: a token depends mostly on its neighbours, and hardly on tokens
far to its right in the row above. ZipAR (He et al., 2024, "ZipAR: Parallel Autoregressive
Image Generation through Spatial Locality") therefore starts the next row before the current
one is finished: once the row above is ``window`` tokens ahead, the next row's first token is
decoded, and from then on every row in progress gains one token per forward pass ("next-set
prediction"). An 8-row grid of 8 tokens takes ``7 * window + 8`` passes instead of 64.

How one forward pass is built here (:func:`plan_pass`): for every row in progress the query
is its newest decoded token, at its raster position; its logits give the row's next token.
A row whose last token was just decoded feeds it once more so that later rows can attend to
it. A row that starts while the row above is unfinished has no raster predecessor yet (the
row above's last token): its first token is predicted by an *auxiliary* query placed at the
predecessor's position, which nobody attends to afterwards. The auxiliary query's token is a
stand-in for the unknown predecessor: ZipAR's reference implementation copies the newest
token of the row above (``aux=newest``); by default (``aux=above``) it is the last token of
the nearest finished row above, the same column as the predecessor (spatial locality again;
the newest token when no row above is finished). With ``window`` at least the row width this
is exactly raster-order decoding.

The KV cache keeps one entry per decoded token; the attention mask keeps each query's
context *causal in raster order*: a query at grid cell (r, c) attends only to tokens that
precede it in raster order and are already decoded (plus itself). It never sees a token
after it, and it misses the row above's tokens that are not decoded yet (those beyond
``window`` to its right): the approximation ZipAR makes.

The schedule depends only on the grid and the settings (:func:`schedule`), so it is planned
once per grid and replayed; :func:`training_layout` lays it out as one sequence whose mask
and positions give every query exactly the context it has in decoding (tested against the
decoder's own logits), which is how a model is taught ZipAR's contexts
(:mod:`bench.models.digits.training.zipar_contexts`).

Records (``notes["decoding"]``): ``forward_passes_per_image`` and ``tokens_per_forward``.
Quality changes (the images are not the baseline's); the window trades speed for fidelity.

Measured on a CPU (one thread, batches of 8, 200 sampled images, FID on the digit
classifier's features, noise floor 0.96 +- 0.09, ``tests/benchmarks/scripts/ar_decoding.py``,
each stack timed in alternation with the baseline):

* ``digits-ar`` as shipped (fine-tuned on ZipAR's contexts for windows 2-4, see below):
  baseline adherence 0.975, FID 1.09; ``window=2`` 2.10x faster (22 passes per image, 2.9
  tokens per pass), adherence 0.980, FID 1.24 (in the band); ``window=3`` 1.73x, 0.990,
  0.95; ``window=4`` 1.48x, 0.975, 1.08.
* the same model trained in raster order only (the weights before that fine-tuning;
  baseline 0.995, FID 1.08): ``window=2`` 1.92x but adherence 0.80 and FID 10.0;
  ``window=3`` 1.60x, 0.94, 3.0; ``window=4`` 1.40x, 0.97, 2.8. ``digits-ar-large``
  (raster order only): 1.94x / 0.93 / 4.5 and 1.64x / 0.97 / 1.8.

The 8-token rows of the digits are so short that even ``window=4`` hides half the row above
from a row's first tokens, contexts a raster-trained model never saw; ZipAR's locality
argument holds better on the long rows of real models (24 tokens for Janus, 90 for Emu3),
and a model that has seen those contexts in training keeps its quality. Records of a model
fine-tuned for ZipAR say so in a caveat (the model's ``trained_for``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bench.models.base import has_tokens
from strategies.core.base import StrategyConfig, param
from strategies.core.decoding import DecodingStrategy


@dataclass(frozen=True)
class Config(StrategyConfig):
    """How far the row above must be ahead before a row starts.

    Attributes:
        window: tokens the row above must have decoded before the next row starts; the
            row width (or more) decodes in plain raster order, 1 is the most parallel.
        aux: the token an auxiliary query feeds for a new row's unknown predecessor:
            ``above`` the last token of the nearest finished row above (the predecessor's
            column), ``newest`` the row above's newest token (ZipAR's reference code).
    """

    window: int = param(3, "tokens the row above leads by before the next row starts",
                        low=1, high=4096)
    aux: str = param("above", "the stand-in token of a new row's unknown predecessor",
                     choices=("above", "newest"))

    always_show = ("window",)


@dataclass(frozen=True)
class Query:
    """One query of a ZipAR forward pass.

    Attributes:
        row, col: the grid cell whose token is fed (for an auxiliary query: the newest
            decoded cell of the row above, whose token it copies).
        position_cell: the raster index the query sits at (the fed cell's own index, or for
            an auxiliary query the index of the cell before ``predicts``).
        predicts: the raster index of the token its logits decide, or None (a row's last
            token fed only so that later rows can see it).
        keep: False for an auxiliary query (nobody attends to it afterwards).
    """

    row: int
    col: int
    position_cell: int
    predicts: int | None
    keep: bool


def plan_pass(decoded: list[int], fed: list[int], started: list[bool], cols: int,
              window: int, aux: str = "newest") -> list[Query]:
    """The queries of the next forward pass.

    Args:
        decoded: tokens decoded so far in each row.
        fed: tokens of each row already in the KV cache.
        started: whether each row's first token has been (or is being) decided.
        cols: row width.
        window: the lead the row above needs before a row starts.
        aux: the stand-in token of an auxiliary query (see :class:`Config`).
    """
    rows = len(decoded)
    out: list[Query] = []
    starts_by_predecessor: set[int] = set()
    for r in range(rows):
        n = decoded[r]
        if n == 0 or fed[r] >= n:
            continue
        cell = r * cols + n - 1
        if n < cols:
            out.append(Query(r, n - 1, cell, cell + 1, True))
        elif r + 1 < rows and not started[r + 1]:
            out.append(Query(r, n - 1, cell, cell + 1, True))  # the real predecessor
            starts_by_predecessor.add(r + 1)
        else:
            out.append(Query(r, n - 1, cell, None, True))
    for r in range(rows - 1):
        n = decoded[r]
        if (not started[r + 1] and r + 1 not in starts_by_predecessor
                and min(window, cols) <= n < cols):
            first = (r + 1) * cols
            src_row, src_col = r, n - 1
            if aux == "above":
                done_above = [a for a in range(r - 1, -1, -1) if decoded[a] == cols]
                if done_above:
                    src_row, src_col = done_above[0], cols - 1
            out.append(Query(src_row, src_col, first - 1, first, False))
    return out


def schedule(rows: int, cols: int, window: int, aux: str = "above") -> list[list[Query]]:
    """Every forward pass of ZipAR decoding on a ``rows x cols`` grid, in order.

    The schedule depends only on the grid and the settings, never on the tokens, so it is
    planned once: the decoder replays it, and :func:`training_layout` lays it out as one
    sequence for training. The first token comes from the prompt's pass (not listed).
    """
    decoded, fed, started = [0] * rows, [0] * rows, [False] * rows
    decoded[0], started[0] = 1, True
    passes: list[list[Query]] = []
    while sum(decoded) < rows * cols:
        plan = plan_pass(decoded, fed, started, cols, window, aux)
        if not plan:
            raise RuntimeError("ZipAR schedule stalled")  # cannot happen; a safety net
        for q in plan:
            if q.keep:
                fed[q.row] = q.col + 1
            if q.predicts is not None:
                r = q.predicts // cols
                decoded[r] += 1
                started[r] = True
        passes.append(plan)
    return passes


@dataclass(frozen=True)
class Layout:
    """A ZipAR schedule laid out as one sequence: entry 0 is the prompt's last token (it
    predicts image token 0), then every query of every pass in order.

    Run a network once over the whole sequence with :meth:`mask` and ``positions`` and each
    entry's logits are exactly those ZipAR decoding computes for it with its KV cache (each
    entry sees what was in the cache and its own pass's earlier kept queries, nothing else).
    Training on this layout teaches a model the contexts ZipAR decodes with.

    Attributes:
        cells: the image cell whose token each entry feeds (-1: the prompt; an auxiliary
            query feeds its stand-in's cell).
        positions: the raster index each entry sits at (-1: the prompt).
        keep: whether later entries may see it (auxiliary queries: no).
        passes: the forward pass each entry runs in (0: the prompt's).
        predicts: the image cell each entry's logits decide (-1: none).
    """

    cells: tuple[int, ...]
    positions: tuple[int, ...]
    keep: tuple[bool, ...]
    passes: tuple[int, ...]
    predicts: tuple[int, ...]

    def mask(self) -> torch.Tensor:
        """``(n, n)`` bool: entry ``e`` may attend to entry ``f``."""
        pos = torch.tensor(self.positions)
        run = torch.tensor(self.passes)
        keep = torch.tensor(self.keep)
        allowed = keep[None, :] & (run[None, :] <= run[:, None]) & (pos[None, :] <= pos[:, None])
        return allowed | torch.eye(len(pos), dtype=torch.bool)


def training_layout(rows: int, cols: int, window: int, aux: str = "above") -> Layout:
    """The :class:`Layout` of ZipAR decoding with ``window`` (``window >= cols``: plain
    raster order, a causal sequence)."""
    entries = [(-1, -1, True, 0, 0)]
    for i, plan in enumerate(schedule(rows, cols, min(window, cols), aux), start=1):
        entries += [(q.row * cols + q.col, q.position_cell, q.keep, i,
                     -1 if q.predicts is None else q.predicts) for q in plan]
    cells, positions, keep, passes, predicts = zip(*entries, strict=True)
    return Layout(cells, positions, keep, passes, predicts)


class ZipARDecoder:
    """The ZipAR decoding loop (a decoder for ``model.set_decoder``).

    Args:
        window: see :class:`Config`.
        aux: see :class:`Config`.
    """

    name = "zipar"
    needs_draft = False
    needs_cache = True

    def __init__(self, window: int = 3, aux: str = "above") -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if aux not in ("above", "newest"):
            raise ValueError(f"aux must be 'above' or 'newest', got {aux!r}")
        self.window = int(window)
        self.aux = aux
        self._plans: dict[tuple[int, int, str], list[tuple[torch.Tensor, ...]]] = {}

    def describe(self) -> dict[str, Any]:
        """Settings recorded with results."""
        return {"decoder": self.name, "window": self.window, "aux": self.aux}

    def _plan(self, rows: int, cols: int, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
        """The schedule as tensors per pass (cells fed, positions, keep, predicted cells,
        which queries predict), planned once per grid."""
        key = (rows, cols, str(device))
        if key not in self._plans:
            plans = []
            for plan in schedule(rows, cols, self.window, self.aux):
                which = [i for i, q in enumerate(plan) if q.predicts is not None]
                plans.append((
                    torch.tensor([q.row * cols + q.col for q in plan], device=device),
                    torch.tensor([q.position_cell for q in plan], device=device),
                    torch.tensor([q.keep for q in plan], device=device),
                    torch.tensor([plan[i].predicts for i in which], device=device),
                    torch.tensor(which, device=device),
                ))
            self._plans[key] = plans
        return self._plans[key]

    def __call__(self, s) -> None:
        """Decode every image of session ``s`` (a :class:`DecodingSession`)."""
        rows, cols = s.grid
        b, dev = s.batch, s.device
        logits = s.target.prefill(s.prompt)
        s.step()
        s.out[:, 0] = s.choose(logits, index=torch.zeros(b, dtype=torch.long, device=dev))
        for cells, cell_pos, keep, predicts, which in self._plan(rows, cols, dev):
            positions = s.position(cell_pos)
            logits = s.target.run(s.out[:, cells], positions.expand(b, -1), keep.expand(b, -1))
            s.step()
            for i, cell in zip(which.tolist(), predicts.tolist(), strict=True):
                index = torch.full((b,), cell, dtype=torch.long, device=dev)
                s.out[:, cell] = s.choose(logits[:, i], index=index)
        s.stats.tokens += b * rows * cols


class ZipAR(DecodingStrategy):
    """Decode the rows of the image-token grid in parallel (ZipAR, training-free)."""

    name = "zipar"
    summary = "ZipAR parallel decoding: start each row once the row above leads by `window` tokens"
    Config = Config
    needs = "ZipAR decodes the rows of an autoregressive model's grid of tokens in raster order"
    cache_use = "each pass feeds only the newest token of each row"

    def supports_decoding(self, model) -> str | None:
        if not has_tokens(model) or model.token_grid is None or model.token_grid[0] < 2:
            return f"{model.name} has no token grid of several rows to decode in parallel"
        return None

    def apply(self, model):
        rows, cols = model.token_grid
        window = min(self.config.window, cols)
        model.set_decoder(ZipARDecoder(window, self.config.aux))
        passes = (rows - 1) * window + cols
        model.notes[self.name] = {
            "window": window,
            "aux": self.config.aux,
            "grid": [rows, cols],
            "forward_passes_per_image": passes,
            "plain_forward_passes_per_image": rows * cols,
            "note": "each row starts once the row above leads by `window` tokens; a token "
            "misses the row above's tokens not decoded yet, so the images differ from the "
            "baseline's",
        }
        return model
