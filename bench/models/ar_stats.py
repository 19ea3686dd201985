"""The counts of the image-token decoding loop (:mod:`bench.models.ar_decoding`).

Every generation call adds its counts to ``model.notes["decoding"]``, a flat JSON-able dict
(summed over the calls since the model was loaded, cloned or changed). Keys:

``decoder``
    the decoding algorithm (``autoregressive``, ``zipar``, ``sjd``, ``speculative``).
``tokens``
    image tokens generated.
``images``
    images generated.
``forward_passes``
    forward passes of the target network (batched calls: one pass serves every image of the
    batch), the prompt's prefill included.
``image_forward_passes``
    target forward passes counted once per image they advanced (an image that is finished
    no longer counts).
``forward_passes_per_image``
    ``image_forward_passes / images``: the sequential forward passes one image needs
    (64 for plain decoding of an 8x8 digit, whatever the batch size).
``tokens_per_forward``
    ``tokens / image_forward_passes``: tokens an image gains per target forward pass
    (1.0 for plain decoding).
``draft_forward_passes``
    forward passes of the draft network (speculative decoding).
``draft_proposed``, ``draft_accepted``, ``draft_checked``
    draft tokens offered to the target for verification, kept by it, and checked before the
    first rejection of each round (speculative and Jacobi decoding).
``acceptance_rate``
    ``draft_accepted / draft_proposed``: share of proposed draft tokens accepted.
``token_acceptance``
    ``draft_accepted / draft_checked``: probability that a checked draft token is accepted.
``acceptance_per_iteration``
    speculative Jacobi decoding: acceptance rate of the i-th Jacobi iteration of a call
    (i = 0, 1, ..., at most :data:`ITERATION_SLOTS` entries, the last collecting the rest),
    with its raw sums in ``accepted_per_iteration`` and ``proposed_per_iteration``.

Keys that do not apply to a decoder are absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Jacobi iterations tracked one by one in ``acceptance_per_iteration``.
ITERATION_SLOTS = 16
#: The counters summed across calls (everything else is derived from them).
_SUMMED = (
    "tokens",
    "images",
    "forward_passes",
    "image_forward_passes",
    "draft_forward_passes",
    "draft_proposed",
    "draft_accepted",
    "draft_checked",
)



@dataclass
class DecodingStats:
    """Counts of one generation call (see the module docstring for their meaning)."""

    decoder: str = "autoregressive"
    tokens: int = 0
    images: int = 0
    forward_passes: int = 0
    image_forward_passes: int = 0
    draft_forward_passes: int = 0
    draft_proposed: int = 0
    draft_accepted: int = 0
    draft_checked: int = 0
    accepted_per_iteration: list[int] = field(default_factory=list)
    proposed_per_iteration: list[int] = field(default_factory=list)
    uses_draft: bool = False

    def iteration(self, index: int, accepted: int, proposed: int) -> None:
        """Add one Jacobi iteration's counts (summed over the images it advanced)."""
        slot = min(index, ITERATION_SLOTS - 1)
        while len(self.accepted_per_iteration) <= slot:
            self.accepted_per_iteration.append(0)
            self.proposed_per_iteration.append(0)
        self.accepted_per_iteration[slot] += int(accepted)
        self.proposed_per_iteration[slot] += int(proposed)


def merge_stats(total: dict[str, Any], call: DecodingStats) -> dict[str, Any]:
    """Add one call's counts to the running ``notes["decoding"]`` dict and recompute the
    derived figures; returns ``total`` (changed in place)."""
    if total.get("decoder") not in (None, call.decoder):
        total.clear()  # another decoder now: the old counts describe something else
    total["decoder"] = call.decoder
    keys = ["tokens", "images", "forward_passes", "image_forward_passes"]
    if call.uses_draft:
        keys.append("draft_forward_passes")
    if call.uses_draft or call.draft_proposed or call.proposed_per_iteration:
        keys += ["draft_proposed", "draft_accepted", "draft_checked"]
    for key in keys:
        total[key] = total.get(key, 0) + getattr(call, key)
    images, passes = total.get("images", 0), total.get("image_forward_passes", 0)
    total["forward_passes_per_image"] = passes / images if images else None
    total["tokens_per_forward"] = total["tokens"] / passes if passes else None
    if call.proposed_per_iteration or "proposed_per_iteration" in total:
        for key in ("accepted_per_iteration", "proposed_per_iteration"):
            mine, theirs = list(total.get(key, [])), list(getattr(call, key))
            width = max(len(mine), len(theirs))
            mine += [0] * (width - len(mine))
            theirs += [0] * (width - len(theirs))
            total[key] = [a + b for a, b in zip(mine, theirs, strict=True)]
        total["acceptance_per_iteration"] = [
            round(a / p, 4) if p else None
            for a, p in zip(total["accepted_per_iteration"], total["proposed_per_iteration"],
                            strict=True)
        ]
    if total.get("draft_proposed"):
        total["acceptance_rate"] = total["draft_accepted"] / total["draft_proposed"]
        checked = total.get("draft_checked", 0)
        total["token_acceptance"] = total["draft_accepted"] / checked if checked else None
    return total


def add_stats(total: DecodingStats, part: DecodingStats) -> None:
    """Add ``part``'s summed counters to ``total`` (in place)."""
    for key in _SUMMED:
        setattr(total, key, getattr(total, key) + getattr(part, key))
    for i, (a, p) in enumerate(zip(part.accepted_per_iteration, part.proposed_per_iteration,
                                   strict=True)):
        total.iteration(i, a, p)


__all__ = ["ITERATION_SLOTS", "DecodingStats", "add_stats", "merge_stats"]
