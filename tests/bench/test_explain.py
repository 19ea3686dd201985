"""Why a stack is slower: named only from facts the record holds."""

from __future__ import annotations

from bench.core.explain import is_slower, why_slower


def _record(stack, ratio=0.7, significant=True, features=("avx2",), device="cpu", **extra):
    return {
        "status": "ok",
        "stack": [{"name": n, "config": c} for n, c in stack],
        "settings": {"device": device},
        "environment": {"cpu_features": list(features)},
        "stats": {"speedup": {"ratio": ratio, "significant": significant}},
        **extra,
    }


def test_only_significantly_slower_stacks_are_explained():
    assert is_slower(_record([("bf16", {})]))
    assert why_slower(_record([("bf16", {})], ratio=1.3)) == []
    assert why_slower(_record([("bf16", {})], significant=False)) == []
    assert why_slower({**_record([("bf16", {})]), "status": "failed"}) == []


def test_half_precision_without_units_on_the_cpu():
    (reason,) = why_slower(_record([("bf16", {})]))
    assert "without bfloat16 units" in reason
    assert why_slower(_record([("bf16", {})], features=("avx512_bf16",))) == []
    assert why_slower(_record([("bf16", {})], device="cuda")) == []
    assert why_slower(_record([("bf16", {})], features=())) != []
    assert why_slower({**_record([("bf16", {})]), "environment": {}}) == []  # CPU unknown: no guess


def test_quantization_without_compile_and_compile_still_warming_up():
    (reason,) = why_slower(_record([("quant", {"mode": "int8-weight-only"})]))
    assert reason.startswith("int8-weight-only quantization without compile")
    assert why_slower(_record([("quant", {}), ("compile", {})])) == []
    warming = _record([("compile", {})], timing={"latencies_s": [2.0, 0.5, 0.5, 0.5, 0.5]})
    assert "still warming up" in why_slower(warming)[0] and "2000 ms" in why_slower(warming)[0]
    settled = _record([("compile", {})], timing={"latencies_s": [0.5] * 5})
    assert why_slower(settled) == []


def test_low_acceptance_and_a_busy_machine():
    low = _record([("speculative", {})], decoding={"acceptance_rate": 0.4})
    assert "accepted only 40%" in why_slower(low)[0]
    assert why_slower(_record([("speculative", {})], decoding={"acceptance_rate": 0.9})) == []
    busy = _record([("steps", {})], load={"oversubscribed": True})
    assert "busy with other work" in why_slower(busy)[0]
