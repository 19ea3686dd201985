"""One arm of an interleaved measurement, in its own process, on its own copy of the code.

:mod:`bench.interleave` starts this file's text with ``python -c`` in the directory of the
code tree to measure (a checkout of the baseline commit, say), so ``bench`` and
``strategies`` are imported from *that* tree. It therefore uses only the stable contracts
(``bench.models.load_model``, ``strategies.parse_stack``, ``bench.harness.measure``) and
nothing newer, so it also runs on trees older than the interleaved mode itself.

Protocol: the configuration is ``argv[1]`` (JSON). The worker answers on its standard
output, one JSON object per line: first ``{"ready": ...}`` (or ``{"error": ...}``), then one
answer per command read from standard input:

* ``{"cmd": "warmup", "n": k}``: k untimed calls.
* ``{"cmd": "time", "n": k}``: k timed calls; answers ``latencies_s``, ``bounds``,
  ``step_times_s`` (the harness's raw samples).
* ``{"cmd": "images", "n": N}``: the quality images (float32, base64) of N prompts.
* ``{"cmd": "quit"}``.

Anything the libraries print goes to standard error, never into the protocol.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import traceback


def _serve(config: dict, out) -> None:
    import torch

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    import bench
    from bench.harness import TimingConfig, measure
    from bench.models import load_model
    from bench.models.base import ModelSpec
    from strategies import parse_stack

    def send(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    t0 = time.perf_counter()
    base = load_model(ModelSpec(config["model"], device=config.get("device", "cpu")))
    load_s = time.perf_counter() - t0
    if config.get("steps"):
        base.call_args["num_inference_steps"] = int(config["steps"])
    fingerprint = base.fingerprint()
    stack = parse_stack(config["strategy"])
    for s in stack:
        reason = s.supports(base)
        if reason:
            send({"error": f"{s.spec}: {reason}", "status": "unsupported",
                  "bench_file": bench.__file__})
            return
    t0 = time.perf_counter()
    model = stack.apply(base)
    apply_s = time.perf_counter() - t0
    batch = int(config["batch_size"])
    seed = int(config.get("seed", 0))
    prompts, _ = model.prompts(batch)
    seeds = [seed + i for i in range(batch)]
    device = torch.device(config.get("device", "cpu"))

    def call(step_callback):
        with torch.inference_mode():
            return model.generate(prompts, seeds, step_callback=step_callback)

    describe = model.describe()
    describe["base_fingerprint"] = fingerprint
    send({
        "ready": True,
        "bench_file": bench.__file__,
        "spec": stack.spec,
        "describe": describe,
        "steps": model.steps,
        "dtype": str(model.dtype).replace("torch.", ""),
        "load_s": load_s,
        "apply_s": apply_s,
        "notes": _jsonable(model.notes),
        "stack": stack.config(),
    })
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        if cmd == "quit":
            return
        if cmd == "warmup":
            timing = measure(call, device, TimingConfig(warmup=int(msg["n"]), min_iterations=1,
                                                        min_seconds=0, max_iterations=1))
            send({"warmup_s": timing.warmup_s + timing.latencies_s})
        elif cmd == "time":
            n = int(msg["n"])
            timing = measure(call, device, TimingConfig(warmup=0, min_iterations=n, min_seconds=0,
                                                        max_iterations=n))
            send({"latencies_s": timing.latencies_s, "bounds": timing.bounds,
                  "step_times_s": timing.step_times_s})
        elif cmd == "images":
            n = int(msg["n"])
            q_prompts, labels = model.prompts(n)
            chunks = []
            for i in range(0, n, batch):
                with torch.inference_mode():
                    chunks.append(model.generate(q_prompts[i:i + batch],
                                                 [seed + j for j in range(i, min(i + batch, n))]))
            images = torch.cat(chunks).float().contiguous()
            send({"shape": list(images.shape), "labels": labels, "prompts": q_prompts,
                  "data": base64.b64encode(images.numpy().tobytes()).decode()})
        else:
            send({"error": f"unknown command {cmd!r}"})


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return json.loads(json.dumps(value, default=str))


def main() -> None:
    """Serve one arm: the protocol goes to the original stdout, everything else to stderr."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    config = json.loads(sys.argv[1])
    try:
        _serve(config, out)
    except Exception as exc:  # report, do not hang the coordinator
        out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}", "status": "failed",
                              "traceback": traceback.format_exc()}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
