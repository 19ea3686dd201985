"""Arms: the strategy stacks of a run, ready to be timed by a schedule.

An arm is one stack applied to its own copy of the model. A schedule only asks an arm to
``warmup(n)`` and ``time(n)`` (:mod:`bench.measure.schedules`); the engine then asks it for its
quality ``images``. :class:`LocalArm` runs in this process; :class:`WorkerArm` runs in a
worker process that imports ``bench`` and ``strategies`` from another code tree (a checkout
of another commit), so two versions of the code can be timed in alternation on one machine
(see :mod:`bench.measure.worker`).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.core.formats import slug
from bench.measure.harness import CallSamples, timed_calls, warmup_calls


class LocalArm:
    """A stack applied to a copy of the model, in this process.

    Args:
        label: the stack's canonical spec (its name in logs and records).
        model: the model with the stack applied.
        prompts, seeds: the timed call's inputs (one image per prompt).
        side: ``current`` (this code tree); see :class:`WorkerArm`.
        info: what preparing it found out (apply time, description, stack config).
    """

    local = True

    def __init__(self, label: str, model: Any, prompts: Sequence[str], seeds: Sequence[int],
                 side: str = "current", info: dict[str, Any] | None = None) -> None:
        self.label = label
        self.spec = label
        self.model = model
        self.prompts = list(prompts)
        self.seeds = list(seeds)
        self.side = side
        self.info = info or {}

    @property
    def device(self) -> Any:
        return self.model.device

    def call(self, step_callback: Callable[[int], None] | None) -> Any:
        """One generation call of the measured shape."""
        import torch

        with torch.inference_mode():
            return self.model.generate(self.prompts, self.seeds, step_callback=step_callback)

    def warmup(self, n: int) -> list[tuple[float, float]]:
        """``n`` untimed calls; their (start, end)."""
        return warmup_calls(self.call, self.device, n)

    def time(self, n: int, sync_steps: bool = False) -> CallSamples:
        """``n`` timed calls (``sync_steps``: see :class:`bench.core.config.TimingConfig`)."""
        return timed_calls(self.call, self.device, n, sync_steps)

    def images(self, prompts: Sequence[str], seeds: Sequence[int], batch_size: int,
               progress: Callable[[int], None] | None = None) -> Any:
        """One image per (prompt, seed), generated ``batch_size`` at a time (float NCHW)."""
        import torch

        chunks = []
        for i in range(0, len(prompts), batch_size):
            with torch.inference_mode():
                chunks.append(self.model.generate(list(prompts[i:i + batch_size]),
                                                  list(seeds[i:i + batch_size])).float())
            if progress:
                progress(len(chunks[-1]))
        return torch.cat(chunks)

    def close(self) -> None:
        self.model = None


class WorkerError(RuntimeError):
    """A worker process that failed or answered nonsense; carries its stderr's tail."""


class WorkerArm:
    """An arm in a worker process importing ``bench`` from ``src`` (see :mod:`bench.measure.worker`).

    Raises :class:`WorkerError` when the worker cannot start. A stack the worker's tree cannot
    apply is not an error: :attr:`status` says ``unsupported`` and :attr:`error` why.
    """

    local = False

    def __init__(self, label: str, src: str | os.PathLike, side: str, config: dict[str, Any],
                 log_dir: Path) -> None:
        self.label = label
        self.side = side
        self.src = str(Path(src).resolve())
        self.spec = config["strategy"]
        self.device = config.get("device", "cpu")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{slug(label)}.log"
        source = Path(__file__).with_name("worker.py").read_text(encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = self.src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", source, json.dumps(config)],
            cwd=self.src, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, text=True, bufsize=1,
        )
        self.info = self._read()
        self.status = "ok"
        self.error: str | None = None
        if "error" in self.info:
            self.status = self.info.get("status", "failed")
            self.error = self.info["error"]
            if self.status == "failed":
                self.close()
                raise WorkerError(f"{label}: {self.error}\n{self.info.get('traceback', '')}")
        bench_file = str(self.info.get("bench_file", ""))
        if not Path(bench_file).resolve().is_relative_to(self.src):
            self.close()
            raise WorkerError(
                f"{label}: the worker imported bench from {bench_file}, not from {self.src}; "
                "is another accelbench installed in a way that shadows PYTHONPATH?"
            )
        if self.status == "ok":
            self.spec = self.info.get("spec", self.spec)

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            self._log.flush()
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise WorkerError(f"{self.label}: worker exited (code {self.proc.poll()}):\n{tail}")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise WorkerError(f"{self.label}: unreadable answer {line[:200]!r}") from None

    def _ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise WorkerError(f"{self.label}: {reply['error']}")
        return reply

    def warmup(self, n: int) -> list[tuple[float, float]]:
        if not n:
            return []
        return [tuple(b) for b in self._ask({"cmd": "warmup", "n": n})["bounds"]]

    def time(self, n: int, sync_steps: bool = False) -> CallSamples:
        reply = self._ask({"cmd": "time", "n": n, "sync_steps": sync_steps})
        return CallSamples(latencies_s=list(reply["latencies_s"]),
                           bounds=[tuple(b) for b in reply["bounds"]],
                           step_times_s=[list(s) for s in reply["step_times_s"]],
                           step_clock=reply.get("step_clock"))

    def images(self, prompts: Sequence[str], seeds: Sequence[int], batch_size: int,
               progress: Callable[[int], None] | None = None) -> Any:
        import numpy as np
        import torch

        reply = self._ask({"cmd": "images", "prompts": list(prompts), "seeds": list(seeds),
                           "batch_size": batch_size})
        data = np.frombuffer(base64.b64decode(reply["data"]), dtype=np.float32)
        if progress:
            progress(len(prompts))
        return torch.from_numpy(data.copy()).reshape(reply["shape"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired, AssertionError):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


__all__ = ["LocalArm", "WorkerArm", "WorkerError"]
