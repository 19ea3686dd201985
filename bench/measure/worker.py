"""One arm of a run, in its own process, on its own copy of the code (code against code).

:class:`bench.measure.arms.WorkerArm` starts this file's text with ``python -c`` in the directory of
the code tree to measure (a checkout of the baseline commit, say), so ``bench`` and
``strategies`` are imported from *that* tree. It therefore uses only the oldest, stable
contracts (``bench.models.load_model``, ``bench.models.base.ModelSpec``,
``strategies.parse_stack``, a model's ``prompts``/``generate``/``describe``/``fingerprint``),
and times calls with its own loop, written here, so that both trees are timed by the very
same code.

Protocol: the configuration is ``argv[1]`` (JSON). The worker answers on its standard
output, one JSON object per line: first ``{"ready": ...}`` (or ``{"error": ...}``), then one
answer per command read from standard input:

* ``{"cmd": "warmup", "n": k}``: k untimed calls; answers their ``bounds``.
* ``{"cmd": "time", "n": k, "sync_steps": false}``: k timed calls; answers ``latencies_s``,
  ``bounds`` (on the machine-wide ``perf_counter`` clock), ``step_times_s`` and
  ``step_clock``. Step times come as in :func:`bench.measure.harness.step_recorder`: CUDA events read
  after the call on CUDA (host stamps after a synchronisation at every step with
  ``sync_steps``), host stamps on the CPU.
* ``{"cmd": "images", "prompts": [...], "seeds": [...], "batch_size": b}``: the quality
  images (float32, base64).
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


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _serve(config: dict, out) -> None:
    import torch

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    import bench  # lazy: imported from the tree under test, after torch's threads are set
    from bench.models import (
        load_model,  # lazy: imported from the tree under test, after torch's threads are set
    )
    from bench.models.base import (
        ModelSpec,  # lazy: imported from the tree under test, after torch's threads are set
    )
    from strategies import (
        parse_stack,  # lazy: imported from the tree under test, after torch's threads are set
    )

    def send(obj: dict) -> None:
        out.write(json.dumps(obj, default=str) + "\n")
        out.flush()

    device = torch.device(config.get("device", "cpu"))
    t0 = time.perf_counter()
    dtype = {"dtype": config["dtype"]} if config.get("dtype") else {}  # older trees lack it
    base = load_model(ModelSpec(config["model"], device=str(device), **dtype,
                                trust_remote_code=bool(config.get("trust_remote_code")),
                                allow_download=bool(config.get("allow_download"))))
    load_s = time.perf_counter() - t0
    if config.get("steps"):
        base.call_args["num_inference_steps"] = int(config["steps"])
    resolution = config.get("resolution")
    if resolution and ("height" in base.call_args or config["model"].startswith(("hf:", "arch:"))):
        base.call_args["height"], base.call_args["width"] = (int(v) for v in resolution)
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
    prompts, seeds = list(config["prompts"]), [int(s) for s in config["seeds"]]

    def call(step_callback):
        with torch.inference_mode():
            return model.generate(prompts, seeds, step_callback=step_callback)

    def timed(n: int, record_steps: bool, sync_steps: bool = False) -> dict:
        events = device.type == "cuda" and not sync_steps
        stream = torch.cuda.current_stream(device) if events else None
        lat, bounds, steps = [], [], []
        for _ in range(n):
            marks: list = []

            def on_step(i, marks=marks):
                if events:  # no synchronisation: read after the call
                    event = torch.cuda.Event(enable_timing=True)
                    event.record(stream)
                    marks.append(event)
                else:
                    _sync(torch, device)
                    marks.append(time.perf_counter())

            _sync(torch, device)
            start = time.perf_counter()
            if events:
                first = torch.cuda.Event(enable_timing=True)
                first.record(stream)
            call(on_step if record_steps else None)
            _sync(torch, device)
            end = time.perf_counter()
            lat.append(end - start)
            bounds.append((start, end))
            edges = [first if events else start, *marks]
            pairs = zip(edges, edges[1:])  # noqa: B905 (old Pythons)
            steps.append([a.elapsed_time(b) / 1000.0 for a, b in pairs] if events
                         else [b - a for a, b in pairs])
        clock = "cuda-events" if events else ("host-synced" if device.type == "cuda" else "host")
        return {"latencies_s": lat, "bounds": bounds, "step_times_s": steps, "step_clock": clock}

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
            send({"bounds": timed(int(msg["n"]), record_steps=False)["bounds"]})
        elif cmd == "time":
            send(timed(int(msg["n"]), record_steps=True, sync_steps=bool(msg.get("sync_steps"))))
        elif cmd == "images":
            q_prompts, q_seeds, b = msg["prompts"], msg["seeds"], int(msg["batch_size"])
            chunks = []
            for i in range(0, len(q_prompts), b):
                with torch.inference_mode():
                    chunks.append(model.generate(q_prompts[i:i + b], q_seeds[i:i + b]).float())
            images = torch.cat(chunks).cpu().contiguous()
            send({"shape": list(images.shape),
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
