"""Run a validated sweep plan with an executor: skip what is recorded, run the rest, store."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.core import results
from bench.core.formats import fmt
from bench.core.record import Record
from bench.sweep import Job, Plan, latest, payload
from bench.sweep.executors.base import Executor, Outcome
from bench.sweep.executors.store import SweepStore


@dataclass
class SweepResult:
    """What a sweep did.

    Attributes:
        plan: the plan that ran.
        ran: ids of the jobs run this time.
        skipped: ids of jobs already recorded before (resumed past).
        recovered: ids whose finished record was found in their folder and appended.
        records: the newest record of every job of the plan that has one, by id.
        seconds: wall time.
        cut_bytes: bytes of a torn last line cut from the results file at the start.
    """

    plan: Plan
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    cut_bytes: int = 0

    def counts(self) -> dict[str, int]:
        """Jobs by status of their newest record."""
        out: dict[str, int] = {}
        for r in self.records.values():
            out[str(r.get("status"))] = out.get(str(r.get("status")), 0) + 1
        return out

    @property
    def failed(self) -> list[str]:
        return [i for i, r in self.records.items() if r.get("status") == "failed"]


def pending(plan: Plan, done: dict[str, dict[str, Any]], retry_failed: bool = False) -> list[Job]:
    """Jobs of ``plan`` to run: those without a record (and failed ones if asked)."""
    return [
        j for j in plan.jobs
        if j.id not in done or (retry_failed and done[j.id].get("status") == "failed")
    ]


def run_plan(
    plan: Plan,
    executor: Executor,
    *,
    retry_failed: bool = False,
    on_start: Callable[[list[Job], list[str]], None] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
) -> SweepResult:
    """Run the jobs of ``plan`` that are not recorded yet and store their records.

    The executor first checks its resources against the plan (and is closed at the end).
    ``on_start(jobs_to_run, skipped_ids)`` is told what will run; ``on_done(outcome)``
    of each job as it is stored.
    """
    spec = plan.spec
    started = time.perf_counter()
    result = SweepResult(plan)
    try:
        executor.check(plan)
        with SweepStore(spec.out_dir) as store:
            result.cut_bytes = store.cut_bytes
            store.save_spec({**spec.as_dict(), **executor.describe(),
                             "jobs": [j.id for j in plan.jobs]}, spec.source)
            done = store.latest()
            result.recovered = store.recover([j.id for j in plan.jobs], done)
            todo = pending(plan, done, retry_failed)
            todo_ids = {j.id for j in todo}
            result.skipped = [j.id for j in plan.jobs if j.id not in todo_ids]
            if on_start:
                on_start(todo, result.skipped)

            def deliver(outcome: Outcome) -> None:
                store.deliver(outcome.record, outcome.files)
                result.ran.append(outcome.job.id)
                if on_done:
                    on_done(outcome)

            if todo:
                executor.run([(j, payload(spec, j)) for j in todo], store.job_dir, deliver)
            ids = {j.id for j in plan.jobs}
            result.records = {k: v for k, v in store.latest().items() if k in ids}
    finally:
        executor.close()
        result.seconds = time.perf_counter() - started
    return result


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plan_table(plan: Plan, retry_failed: bool = False) -> str:
    """The jobs of a plan, one line each, with what a run would do with them."""

    path = results.results_path(plan.spec.out_dir)
    done = latest(results.iter_records(path)) if path.exists() else {}
    todo = {j.id for j in pending(plan, done, retry_failed)}
    rows = [("job", "model", "settings", "strategy", "after", "state")]
    for j in plan.jobs:
        state = "to run" if j.id in todo else f"recorded ({done[j.id].get('status')})"
        if j.id in todo and j.id in done:
            state = "to run again (failed)"
        rows.append((j.id, j.model, j.settings.label, j.strategy, j.after or "-", state))
    spec = plan.spec
    head = (f"sweep {spec.name}: {len(plan.jobs)} jobs ({len(todo)} to run), "
            f"{plan.excluded} excluded; folder {spec.out_dir}; time limit per job "
            f"{'none' if spec.timeout_s is None else f'{spec.timeout_s:g} s'}")
    return head + "\n" + _table(rows)


def summary(result: SweepResult) -> str:
    """The table printed at the end of a sweep: one line per job, then the counts."""
    ran, recovered = set(result.ran), set(result.recovered)
    rows = [("model", "settings", "strategy", "status", "ms/call", "speedup", "PSNR", "SSIM",
             "when", "note")]
    for j in result.plan.jobs:
        r = result.records.get(j.id)
        if r is None:
            rows.append((j.model, j.settings.label, j.strategy, "missing", "", "", "", "", "", ""))
            continue
        rec = Record.from_dict(r)
        lat = rec.latency_ms.median if rec.latency_ms else None
        sp = rec.speedup
        q = rec.quality or {}
        speed = ""
        if sp is not None and not j.is_baseline:
            speed = fmt(sp.ratio, ".2f") + "x" + (f" {sp.verdict}" if sp.verdict else "")
        when = "now" if j.id in ran else "recovered" if j.id in recovered else "before"
        note = "" if rec.ok else str(rec.error or "")[:70]
        rows.append((j.model, j.settings.label, j.strategy, str(rec.status),
                     fmt(lat, ".1f") if lat is not None else "", speed,
                     fmt(q.get("psnr"), ".1f") if q else "", fmt(q.get("ssim"), ".3f") if q else "",
                     when, note))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts().items()))
    tail = (f"\n{len(result.plan.jobs)} jobs: {counts or 'none recorded'}; ran {len(result.ran)}, "
            f"skipped {len(result.skipped)} already recorded"
            + (f", recovered {len(result.recovered)}" if result.recovered else "")
            + f" ({result.seconds:.0f} s)\nresults: {result.plan.spec.out_dir / 'results.jsonl'}")
    return _table(rows) + tail
