"""The decoding loop: the stream's attention mask, per-image randomness, the acceptance rule,
classifier-free guidance and the statistics contract."""

from __future__ import annotations

import json

import pytest
import torch

from bench.models import ar_decoding
from bench.models.ar_decoding import (
    DecodingStats,
    GuidedNetwork,
    RowRandom,
    Sampling,
    decode_autoregressive,
    merge_stats,
)
from tests.support.tiny_ar import RecordingNetwork, tiny_session


def _attended(mask: torch.Tensor) -> list[list[int]]:
    return [(row == 0).nonzero().flatten().tolist() for row in mask]


def test_stream_masks_hidden_entries_and_later_positions():
    session = tiny_session(grid=(1, 6), batch=2)
    recorder = RecordingNetwork(session.target.net)
    session.target.net = recorder
    stream = session.target
    stream.prefill(session.prompt)  # entry 0: position 0
    assert recorder.calls[-1]["mask"] is None  # plain causal: no mask, as generate does
    tokens = torch.tensor([[1, 2, 3], [4, 5, 6]])
    positions = torch.tensor([[1, 2, 3], [1, 2, 3]])
    keep = torch.tensor([[True, True, True], [True, False, True]])
    stream.run(tokens, positions, keep)
    mask = recorder.calls[-1]["mask"][:, 0]
    # Image 0: causal over the prompt and the block. Image 1: entry 2 is an auxiliary query
    # (keep=False): it sees the others before it, nobody sees it.
    assert _attended(mask[0]) == [[0, 1], [0, 1, 2], [0, 1, 2, 3]]
    assert _attended(mask[1]) == [[0, 1], [0, 1, 2], [0, 1, 3]]
    # Drop image 0's last two entries: later queries no longer see them; image 1 keeps them.
    stream.forget(torch.tensor([[False, True, True], [False, False, False]]))
    stream.run(torch.tensor([[7], [7]]), torch.tensor([[2], [4]]), torch.ones(2, 1, dtype=torch.bool))
    mask = recorder.calls[-1]["mask"][:, 0]
    assert _attended(mask[0]) == [[0, 1, 4]]
    assert _attended(mask[1]) == [[0, 1, 3, 4]]
    assert stream.forwards == 3


def test_stream_drops_trailing_entries_no_image_needs():
    session = tiny_session(grid=(1, 6), batch=2)
    stream = session.target
    stream.prefill(session.prompt)
    stream.run(torch.tensor([[1, 2], [3, 4]]), torch.tensor([[1, 2], [1, 2]]),
               torch.ones(2, 2, dtype=torch.bool))
    stream.forget(torch.tensor([[False, True], [False, True]]))
    assert stream.length == 2
    assert ar_decoding.crop_cache  # the cache itself is cropped too:
    assert stream.cache.layers[0].keys.shape[-2] == 2
    # All entries visible and ordered again: the next one-token step needs no mask.
    recorder = RecordingNetwork(stream.net)
    stream.net = recorder
    stream.run(torch.tensor([[5], [5]]), torch.tensor([[2], [2]]), torch.ones(2, 1, dtype=torch.bool))
    assert recorder.calls[-1]["mask"] is None


def test_row_random_depends_only_on_each_images_seed():
    a = RowRandom([3, 4], chunk=4)
    b = RowRandom([4], chunk=4)
    first = [a.uniform(torch.tensor([0, 1])) for _ in range(6)]  # crosses the refill
    second = [b.uniform(torch.tensor([0])) for _ in range(6)]
    assert torch.equal(torch.stack([f[1] for f in first]), torch.stack([s[0] for s in second]))
    reference = torch.rand(8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert torch.equal(torch.stack([s[0] for s in second]), reference[:6])


def test_inverse_cdf_sampling_and_greedy_choices():
    session = tiny_session(batch=3, do_sample=True)
    probs = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    tokens = session.sample(probs, torch.arange(3))
    assert tokens[0] == 1 and tokens[1] in (0, 2) and tokens[2] == 2
    greedy = tiny_session(batch=2, do_sample=False)
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, 1.0]])
    assert greedy.choose(logits).tolist() == [1, 0]
    dist = greedy.distribution(logits)
    assert torch.equal(dist, torch.tensor([[0, 1, 0], [1, 0, 0]], dtype=torch.float64))


def test_temperature_and_top_k():
    session = tiny_session(batch=1, do_sample=True)
    session.sampling = Sampling(do_sample=True, temperature=0.5, top_k=2)
    probs = session.distribution(torch.tensor([[1.0, 2.0, 3.0]]))
    expected = torch.softmax(torch.tensor([[-float("inf"), 4.0, 6.0]], dtype=torch.float64), -1)
    assert torch.allclose(probs, expected)


def test_verify_greedy_keeps_the_prefix_equal_to_the_argmax():
    session = tiny_session(batch=2, do_sample=False)
    target = torch.nn.functional.one_hot(torch.tensor([[2, 0, 1], [1, 1, 1]]), 3).double()
    drafts = torch.tensor([[2, 1], [1, 1]])
    accepted, nxt = session.verify(drafts, None, target, torch.tensor([2, 2]), torch.arange(2))
    assert accepted.tolist() == [1, 2]
    assert nxt.tolist() == [0, 1]  # the target's token at the rejection / one past the drafts


def test_verify_sampled_rejects_impossible_drafts_and_resamples_from_the_residual():
    session = tiny_session(batch=1, do_sample=True)
    p = torch.tensor([[[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]], dtype=torch.float64)
    q = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    for _ in range(20):
        accepted, nxt = session.verify(torch.tensor([[0]]), q, p, torch.tensor([1]), torch.arange(1))
        assert accepted.item() == 0 and nxt.item() in (1, 2)  # p(0) = 0: never kept
    q_same = p[:, :1]
    accepted, _ = session.verify(torch.tensor([[1]]), q_same, p, torch.tensor([1]), torch.arange(1))
    assert accepted.item() == 1  # p == q: always kept


def test_guided_network_combines_conditional_and_unconditional_logits():
    session = tiny_session(batch=2)
    net = session.target.net
    uncond = torch.full_like(session.prompt, 17)
    guided = GuidedNetwork(net, 3.0, uncond)
    pos = torch.zeros(2, 1, dtype=torch.long)
    cond_logits = net.forward(session.prompt, pos, None, None, prompt=True)
    uncond_logits = net.forward(uncond, pos, None, None, prompt=True)
    both = guided.forward(session.prompt, pos, None, None, prompt=True)
    assert torch.allclose(both, uncond_logits + 3.0 * (cond_logits - uncond_logits), atol=1e-5)


def test_statistics_accumulate_and_are_flat_json():
    session = tiny_session(grid=(2, 2), batch=3)
    decode_autoregressive(session)
    total: dict = {}
    merge_stats(total, session.stats)
    merge_stats(total, session.stats)
    assert total["tokens"] == 2 * 12 and total["images"] == 6
    assert total["forward_passes"] == 8 and total["forward_passes_per_image"] == 4.0
    assert total["tokens_per_forward"] == 1.0
    json.dumps(total)
    assert all(not isinstance(v, dict) for v in total.values())
    jacobi = DecodingStats(decoder="sjd", tokens=10, images=1, forward_passes=5,
                           image_forward_passes=5, draft_proposed=8, draft_accepted=5,
                           draft_checked=7)
    jacobi.iteration(0, 3, 4)
    jacobi.iteration(1, 2, 4)
    merge_stats(total, jacobi)  # another decoder: the counts start again
    assert total["decoder"] == "sjd" and total["images"] == 1
    assert total["acceptance_per_iteration"] == [0.75, 0.5]
    assert total["acceptance_rate"] == pytest.approx(5 / 8)
    assert total["token_acceptance"] == pytest.approx(5 / 7)


def test_uncached_decoding_matches_cached():
    cached = tiny_session(grid=(2, 4), batch=2)
    decode_autoregressive(cached)
    uncached = tiny_session(grid=(2, 4), batch=2)
    uncached.use_cache = False
    uncached.target.use_cache = False
    decode_autoregressive(uncached)
    assert torch.equal(cached.out, uncached.out)
