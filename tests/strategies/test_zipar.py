"""zipar: the attention mask keeps every token's context to its decoded raster-order prefix
(against a schedule worked out by hand), the forward-pass count, and the strategy's contract."""

from __future__ import annotations

import pytest
import torch

from strategies import StrategyError, parse_stack, parse_strategy
from strategies.zipar import ZipARDecoder, plan_pass
from tests.support.tiny_ar import RecordingNetwork, tiny_model, tiny_session

# The 3 x 3 grid with window 1, worked out by hand. Cache entries in the order they are
# appended: "P" the prompt, "cK" the real token of cell K (raster index), "aK" the auxiliary
# query that predicts cell K (a copy of the row above's newest token placed just before K).
# Prompt at position 0, cell K at position 1 + K.
HAND_ENTRIES = [["P"], ["c0", "a3"], ["c1", "c3", "a6"], ["c2", "c4", "c6"], ["c5", "c7"]]
HAND_POSITIONS = [[0], [1, 3], [2, 4, 6], [3, 5, 7], [6, 8]]
# What each query attends to: decoded tokens before it in raster order, and itself.
HAND_CONTEXT = [
    None,  # the prompt's prefill: plain causal
    {"c0": {"P", "c0"}, "a3": {"P", "c0", "a3"}},
    {"c1": {"P", "c0", "c1"}, "c3": {"P", "c0", "c1", "c3"}, "a6": {"P", "c0", "c1", "c3", "a6"}},
    {"c2": {"P", "c0", "c1", "c2"}, "c4": {"P", "c0", "c1", "c2", "c3", "c4"},
     "c6": {"P", "c0", "c1", "c2", "c3", "c4", "c6"}},
    {"c5": {"P", "c0", "c1", "c2", "c3", "c4", "c5"},
     "c7": {"P", "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"}},
]


def _raster(label: str) -> int:
    return -1 if label == "P" else int(label[1:]) - (1 if label[0] == "a" else 0)


def test_mask_matches_the_hand_computed_schedule_on_a_3x3_grid():
    session = tiny_session(grid=(3, 3), batch=2)
    recorder = RecordingNetwork(session.target.net)
    session.target.net = recorder
    ZipARDecoder(window=1, aux="newest")(session)
    assert len(recorder.calls) == len(HAND_ENTRIES) == (3 - 1) * 1 + 3
    entries: list[str] = []
    for call, labels, positions, context in zip(recorder.calls, HAND_ENTRIES, HAND_POSITIONS,
                                                HAND_CONTEXT, strict=True):
        assert call["positions"][0].tolist() == positions
        assert torch.equal(call["positions"][0], call["positions"][1])  # same schedule per image
        entries += labels
        if context is None:
            assert call["mask"] is None
            continue
        mask = call["mask"]
        assert mask.shape == (2, 1, len(labels), len(entries))
        for i, label in enumerate(labels):
            seen = {entries[j] for j in range(len(entries)) if mask[0, 0, i, j] == 0}
            assert seen == context[label], label
            assert torch.equal(mask[0], mask[1])
            # Every token's context is a subset of its raster-order prefix (plus itself),
            # and holds no auxiliary query but itself.
            mine = _raster(label)
            for other in seen - {label}:
                assert other[0] != "a"
                assert _raster(other) < mine + (1 if label[0] == "a" else 0)
    assert bool((session.out >= 0).all())


@pytest.mark.parametrize("window", [1, 2, 3])
def test_every_query_sees_only_decoded_tokens_before_it(window):
    """On a 4 x 5 grid: a query attends to no position after its own, and to no position
    whose token was not decoded before the pass (auxiliary queries attend only to themselves)."""
    session = tiny_session(grid=(4, 5), batch=1)
    recorder = RecordingNetwork(session.target.net)
    session.target.net = recorder
    ZipARDecoder(window=window)(session)
    positions = torch.cat([c["positions"][0] for c in recorder.calls])
    start = 0
    for call in recorder.calls:
        q = call["positions"].shape[1]
        if call["mask"] is not None:
            allowed = call["mask"][0, 0] == 0
            for i in range(q):
                own = start + i
                for j in allowed[i].nonzero().flatten().tolist():
                    assert positions[j] <= positions[own]
        start += q
    assert len(recorder.calls) == (4 - 1) * window + 5


def test_plan_pass_starts_rows_by_window():
    # Row 0 has 2 tokens: with window 2 row 1 starts through an auxiliary query.
    plan = plan_pass([2, 0, 0], [1, 0, 0], [True, False, False], cols=4, window=2, aux="newest")
    assert [(q.row, q.col, q.position_cell, q.predicts, q.keep) for q in plan] == [
        (0, 1, 1, 2, True), (0, 1, 3, 4, False)]
    # With a window as wide as the row, row 1 starts from the real predecessor only.
    plan = plan_pass([4, 0], [3, 0], [True, False], cols=4, window=4)
    assert [(q.position_cell, q.predicts, q.keep) for q in plan] == [(3, 4, True)]


def test_full_window_is_raster_order_decoding():
    model = tiny_model()
    prompts, _ = model.prompts(3)
    plain = model.generate(prompts, [0, 1, 2], do_sample=False)
    zipped = parse_stack("zipar:window=8").apply(model.clone())
    assert torch.equal(plain, zipped.generate(prompts, [0, 1, 2], do_sample=False))
    assert zipped.notes["decoding"]["forward_passes_per_image"] == 64


@pytest.mark.parametrize("window", [1, 2, 4])
def test_forward_passes_and_tokens_per_forward(window):
    model = parse_stack(f"zipar:window={window}").apply(tiny_model())
    steps: list[int] = []
    images = model.generate(["a handwritten 1", "a handwritten 7"], [0, 1], step_callback=steps.append)
    assert images.shape == (2, 1, 16, 16)
    decoding = model.notes["decoding"]
    assert decoding["decoder"] == "zipar"
    assert decoding["forward_passes_per_image"] == 7 * window + 8 == len(steps)
    assert decoding["tokens_per_forward"] == pytest.approx(64 / (7 * window + 8))
    assert model.notes["zipar"]["forward_passes_per_image"] == 7 * window + 8


def test_auxiliary_query_copies_the_chosen_stand_in():
    # Row 0 finished, row 1 at 2 tokens, row 2 not started, window 2.
    above = plan_pass([4, 2, 0], [4, 1, 0], [True, True, False], cols=4, window=2, aux="above")
    newest = plan_pass([4, 2, 0], [4, 1, 0], [True, True, False], cols=4, window=2, aux="newest")
    assert [(q.row, q.col) for q in above if not q.keep] == [(0, 3)]  # above the predecessor
    assert [(q.row, q.col) for q in newest if not q.keep] == [(1, 1)]  # row 1's newest
    assert [q.position_cell for q in above if not q.keep] == [7]


def test_sampled_images_follow_their_own_seeds():
    model = parse_stack("zipar:window=2").apply(tiny_model())
    prompts, _ = model.prompts(3)
    a = model.generate(prompts, [0, 1, 2])
    assert torch.equal(a[1:], model.generate(prompts[1:], [1, 2]))
    assert not torch.equal(a[0], model.generate(prompts[:1], [9])[0])


def test_parameters_and_refusals(digits_unet):
    assert parse_strategy("zipar").spec == "zipar:window=3"
    assert parse_strategy("zipar:aux=newest").config.aux == "newest"
    assert parse_strategy("zipar:window=3").config.window == 3
    with pytest.raises(StrategyError, match="out of range"):
        parse_strategy("zipar:window=0")
    reason = parse_strategy("zipar").supports(digits_unet)
    assert reason and "grid of tokens" in reason
    with pytest.raises(StrategyError):
        parse_stack("zipar+no-kv-cache")
    with pytest.raises(StrategyError):
        parse_stack("zipar+sjd")


@pytest.mark.parametrize("window", [1, 2, 3, 8])
def test_training_layout_is_zipar_decoding_in_one_pass(window):
    """The schedule laid out as one training sequence (mask, positions, auxiliary queries)
    gives every query the logits ZipAR decoding gave it: greedy decoding's tokens are the
    argmax of one forward pass over the layout, and the logits agree."""
    from bench.models.digits.training.zipar_contexts import layout_inputs

    session = tiny_session(grid=(8, 8), batch=3)
    recorder = RecordingNetwork(session.target.net)
    session.target.net = recorder
    ZipARDecoder(window=window)(session)
    lm = recorder.net.module
    seqs = torch.cat([session.prompt, session.out], dim=1)
    inputs = layout_inputs(seqs, window)
    labels = inputs.pop("labels")
    with torch.no_grad():
        logits = lm(**inputs, use_cache=False).logits[..., :17]
    decides = labels[0] >= 0
    assert int(decides.sum()) == 64
    assert torch.equal(logits[:, decides].argmax(-1), labels[:, decides])
    decoded = torch.cat([c["logits"] for c in recorder.calls], dim=1)
    assert decoded.shape[1] == logits.shape[1]
    torch.testing.assert_close(decoded, logits, rtol=1e-4, atol=1e-4)


def test_raster_layout_is_the_causal_sequence():
    from bench.models.digits.training.zipar_contexts import layout_inputs

    seqs = torch.randint(0, 17, (2, 65))
    inputs = layout_inputs(seqs, window=8)
    assert torch.equal(inputs["input_ids"], seqs[:, :-1])
    assert torch.equal(inputs["labels"], seqs[:, 1:])
    assert torch.equal(inputs["position_ids"][0], torch.arange(64))
    allowed = inputs["attention_mask"][0, 0] == 0
    assert torch.equal(allowed, torch.ones(64, 64, dtype=torch.bool).tril())


def test_a_model_trained_for_zipar_says_so_in_every_zipar_record(tmp_path):
    """digits-ar was fine-tuned on ZipAR's contexts: its zipar records carry that caveat, its
    other records do not."""
    from bench.core.config import RunConfig, TimingConfig
    from bench.measure.engine import Engine
    from bench.models.digits.ar import load

    assert "zipar" in load().trained_for
    config = RunConfig(
        model="digits-ar", strategies=("baseline", "zipar:window=2"), batch_size=2,
        timing=TimingConfig(warmup=0, min_iterations=1, min_seconds=0, max_iterations=1),
        quality_images=0, out_dir=tmp_path, threads=1, count_flops=False,
    )
    records = {r["strategy"]: r for r in Engine(config, show_progress=False).run().records}
    assert any("fine-tuned on ZipAR" in c for c in records["zipar:window=2"]["caveats"])
    assert not any("ZipAR" in c for c in records["baseline"].get("caveats", []))
