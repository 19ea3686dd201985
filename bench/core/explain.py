"""Why a stack came out slower than the baseline, from facts the run recorded.

Only causes the record itself shows are named; anything else gets no explanation rather than
a guess. Each rule reads the record of the slower stack (and, where needed, the reference's):

* half precision on a CPU without native units (the environment's CPU features);
* int8 quantization without a compiled kernel (the stack);
* compilation still warming up inside the timed loop (first timed calls against the median);
* speculative or parallel decoding whose draft tokens the target mostly rejected
  (the decoding counts);
* a machine busy with other work (the load report).

This module imports no torch, so the report uses it too.
"""

from __future__ import annotations

from typing import Any

from bench.core.formats import number
from bench.core.record import Record

#: A stack counts as slower below this speedup, with a significant test.
SLOWER_BELOW = 1.0
#: Draft acceptance under which speculative decoding cannot pay for its draft.
LOW_ACCEPTANCE = 0.6


def _names(record: dict[str, Any]) -> list[str]:
    return [str(s.get("name")) for s in record.get("stack") or [] if isinstance(s, dict)]


def _config(record: dict[str, Any], name: str) -> dict[str, Any]:
    for s in record.get("stack") or []:
        if isinstance(s, dict) and s.get("name") == name:
            return dict(s.get("config") or {})
    return {}


def is_slower(record: dict[str, Any]) -> bool:
    """The record's speedup is below 1 and significant."""
    sp = Record.from_dict(record).speedup
    return (sp is not None and sp.ratio is not None and sp.ratio < SLOWER_BELOW
            and bool(sp.significant))


def why_slower(record: dict[str, Any]) -> list[str]:
    """The likely reasons ``record`` is slower than its baseline, in words (empty when the
    record shows none, or when it is not slower)."""
    if record.get("status") != "ok" or not is_slower(record):
        return []
    names = _names(record)
    env = record.get("environment") or {}
    device = str((record.get("settings") or {}).get("device") or "cpu")
    features = env.get("cpu_features")
    reasons = []
    if device == "cpu" and features is not None:
        if "bf16" in names and not {"avx512_bf16", "amx_bf16"} & set(features):
            reasons.append("bf16 on a CPU without bfloat16 units (no AVX512-BF16 or AMX-BF16): "
                           "PyTorch converts every operation to float32 and back")
        if "fp16" in names and not {"avx512_fp16", "amx_fp16"} & set(features):
            reasons.append("fp16 on a CPU without float16 units (no AVX512-FP16 or AMX-FP16): "
                           "the arithmetic is emulated")
    if "quant" in names and "compile" not in names:
        mode = _config(record, "quant").get("mode") or "int8"
        reasons.append(f"{mode} quantization without compile: eager kernels dequantize the weights "
                       "at every call; add +compile for fused kernels")
    latencies = Record.from_dict(record).calls.latencies_s
    if "compile" in names and len(latencies) >= 4:
        ordered = sorted(latencies)
        median = ordered[len(ordered) // 2]
        if max(latencies[:2]) > 2 * median:
            reasons.append(f"compile was still warming up inside the timed loop (a first timed call "
                           f"took {max(latencies[:2]) * 1000:.0f} ms against a median of "
                           f"{median * 1000:.0f} ms): raise --warmup")
    decoding = record.get("decoding") or {}
    acceptance = number(decoding.get("acceptance_rate"))
    if acceptance is not None and acceptance < LOW_ACCEPTANCE:
        reasons.append(f"the target accepted only {acceptance:.0%} of the draft's tokens, too few "
                       "to pay for drafting them")
    load = record.get("load") or {}
    if load.get("oversubscribed"):
        reasons.append("the machine was busy with other work during the run (see the load warning)")
    return reasons


__all__ = ["LOW_ACCEPTANCE", "is_slower", "why_slower"]
