"""ToMe: the matching against a plain-Python reference, token counts inside the merged
self-attentions, determinism, and ratio 0 being the plain model."""

from __future__ import annotations

import pytest
import torch

from strategies import StrategyError, parse_stack
from strategies.tome import Config, ToMe, bipartite_soft_matching
from tests.support.tiny_diffusion import PROMPTS, SEEDS, tiny_dit, tiny_unet


def reference_merge(x: torch.Tensor, h: int, w: int, sx: int, sy: int, r: int) -> list[list]:
    """Bipartite soft matching written out token by token (one batch element).

    Returns, per destination token, the list of source tokens merged into it, and the
    merged features (mean of the destination and its sources)."""
    n = h * w
    dst = [i for i in range(n) if (i // w) % sy == 0 and (i % w) % sx == 0]
    src = [i for i in range(n) if i not in dst]
    unit = x / x.norm(dim=-1, keepdim=True)
    best = []
    for s in src:
        sims = [float(unit[s] @ unit[d]) for d in dst]
        j = max(range(len(dst)), key=lambda k: sims[k])
        best.append((sims[j], s, dst[j]))
    best.sort(key=lambda t: -t[0])
    groups = {d: [d] for d in dst}
    for _, s, d in best[:r]:
        groups[d].append(s)
    return groups


def test_merge_matches_the_reference():
    torch.manual_seed(0)
    h = w = 6
    x = torch.randn(1, h * w, 8)
    r = 12
    merge, unmerge = bipartite_soft_matching(x, h, w, 2, 2, r)
    merged = merge(x)
    assert merged.shape == (1, h * w - r, 8)
    groups = reference_merge(x[0], h, w, 2, 2, r)
    expected_dst = torch.stack([x[0, g].mean(0) for g in groups.values()])
    # merge() puts the kept sources first, then the destinations in grid order.
    torch.testing.assert_close(merged[0, -len(groups):], expected_dst)
    # Unmerging gives every merged source its destination's value; the rest are untouched.
    restored = unmerge(merged)[0]
    for d, members in groups.items():
        for i in members:
            torch.testing.assert_close(restored[i], expected_dst[list(groups).index(d)])
    merged_ids = {i for g in groups.values() for i in g}
    for i in set(range(h * w)) - merged_ids:
        torch.testing.assert_close(restored[i], x[0, i])


def test_identical_cells_round_trip_exactly():
    # Each 2x2 cell holds one repeated token: merging the r most similar sources and
    # unmerging recovers the input.
    cells = torch.randn(1, 4, 4, 8)
    x = cells.repeat_interleave(2, 1).repeat_interleave(2, 2).reshape(1, 64, 8)
    merge, unmerge = bipartite_soft_matching(x, 8, 8, 2, 2, 32)
    torch.testing.assert_close(unmerge(merge(x)), x)


def test_zero_merge_is_identity_and_matching_is_deterministic():
    x = torch.randn(2, 16, 4)
    merge, unmerge = bipartite_soft_matching(x, 4, 4, 2, 2, 0)
    assert merge(x) is x and unmerge(x) is x
    a = bipartite_soft_matching(x, 4, 4, 2, 2, 6)[0](x)
    b = bipartite_soft_matching(x.clone(), 4, 4, 2, 2, 6)[0](x.clone())
    assert torch.equal(a, b)


def _tokens_seen_by_attention(model) -> dict[str, list[int]]:
    """Token counts reaching each self-attention's query projection (torch forward hooks)."""
    from strategies.tome import self_attentions

    seen: dict[str, list[int]] = {}
    for path, attn in self_attentions(model.denoiser):
        seen[path] = []
        attn.to_q.register_forward_hook(lambda m, i, o, p=path: seen[p].append(i[0].shape[1]))
    return seen


def test_tome_reduces_tokens_in_the_merged_unet_blocks():
    model = ToMe(Config(ratio=0.5)).apply(tiny_unet(steps=2))
    seen = _tokens_seen_by_attention(model)
    model.generate(PROMPTS, SEEDS)
    # digits-unet: self-attention on 8x8 (64 tokens) and 4x4 (16) grids; by default only the
    # finest (8x8) level merges: 64 -> 32.
    assert set(seen["down_blocks.1.attentions.0.transformer_blocks.0.attn1"]) == {32}
    assert set(seen["up_blocks.1.attentions.1.transformer_blocks.0.attn1"]) == {32}
    assert set(seen["down_blocks.2.attentions.0.transformer_blocks.0.attn1"]) == {16}
    assert set(seen["mid_block.attentions.0.transformer_blocks.0.attn1"]) == {16}
    # The model's own record agrees.
    assert (64, 32) in model.denoiser._accelbench_tome.tokens


def test_max_downsample_merges_deeper_levels_too():
    model = ToMe(Config(ratio=0.5, max_downsample=4)).apply(tiny_unet(steps=1))
    seen = _tokens_seen_by_attention(model)
    model.generate(PROMPTS, SEEDS)
    assert set(seen["mid_block.attentions.0.transformer_blocks.0.attn1"]) == {8}


def test_the_matching_also_runs_on_dit_tokens_but_the_strategy_refuses_dits():
    model = tiny_dit(steps=2)
    reason = ToMe().supports(model)
    assert reason and "DiT" in reason and "UNet" in reason
    # The hooks themselves work on any BasicTransformerBlock: 64 patch tokens -> 48.
    merged = ToMe(Config(ratio=0.25)).apply(model)
    seen = _tokens_seen_by_attention(merged)
    merged.generate(PROMPTS, SEEDS)
    assert seen and all(set(v) == {48} for v in seen.values())


def test_ratio_zero_is_the_plain_model_and_outputs_are_deterministic():
    base_model = tiny_unet(steps=3)
    baseline = base_model.generate(PROMPTS, SEEDS)
    zero = ToMe(Config(ratio=0.0)).apply(base_model.clone())
    assert torch.equal(zero.generate(PROMPTS, SEEDS), baseline)
    half = ToMe(Config(ratio=0.5)).apply(base_model.clone())
    a, b = half.generate(PROMPTS, SEEDS), half.generate(PROMPTS, SEEDS)
    assert torch.equal(a, b) and not torch.equal(a, baseline)


def test_config_limits():
    assert ToMe().spec == "tome:ratio=0.5"
    with pytest.raises(StrategyError, match="sources"):
        parse_stack("tome:ratio=0.75,sx=1,sy=2")
    with pytest.raises(StrategyError):
        parse_stack("tome:ratio=0.9")
