"""The history store: every run filed by commit, commit date, machine and settings.

One SQLite file by default; any SQLAlchemy URL (``postgresql+psycopg://user@host/db``) for a
team that shares one store across CI machines. Two tables (SQLAlchemy Core):

* ``runs``: one row per filed run. Its ``id`` is a content hash of the record set (and of
  what it was filed as), so adding the same run twice stores it once; ``commit`` (full hex),
  ``dirty`` (the tree had uncommitted changes), ``commit_date``, the machine (``machine`` key,
  ``cpu``, ``cpu_count``, ``gpu``, ``driver``), ``label`` (``run``, or the backfill's
  configuration), ``reference_commit`` (a backfill's current tree), ``source``, ``added_at``.
* ``points``: one row per (record, metric) (:mod:`bench.history.points`): ``run``, ``series``,
  ``model``, ``stack``, ``machine``, ``settings``, ``metric``, ``value``, ``low``, ``high``,
  ``unit``, ``higher_is_better``.

The store is append-only: rows are inserted, never updated or deleted. A URL's password is
never shown: every message renders the URL with it hidden.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.core.errors import HistoryError
from bench.core.record import Record, now
from bench.core.results import iter_records, results_path
from bench.history.points import Machine, Point, record_points

#: The columns :meth:`HistoryStore.points` returns, in order.
POINT_COLUMNS = ("series", "model", "stack", "machine", "settings", "metric", "unit",
                 "higher_is_better", "commit", "commit_date", "added_at", "run", "value", "low",
                 "high")
#: Filters :meth:`HistoryStore.points` takes (each a value or a list of values).
FILTERS = ("series", "model", "stack", "machine", "settings", "metric", "commit", "run", "label")
#: Where the store is unless told: this environment variable, else this file in the cwd.
ENV_VAR = "ACCELBENCH_HISTORY"
DEFAULT_PATH = "history.sqlite"


@dataclass(frozen=True)
class AddResult:
    """What :meth:`HistoryStore.add_run` did: ``added`` points filed, ``skipped`` points
    not filed because the same run was already in the store; ``run`` its id."""

    added: int
    skipped: int
    run: str = ""
    commit: str = ""


def default_store() -> str:
    """The store a command uses when not told: ``$ACCELBENCH_HISTORY``, else
    ``history.sqlite`` in the working directory."""
    return os.environ.get(ENV_VAR) or DEFAULT_PATH


def _tables():
    import sqlalchemy as sa

    meta = sa.MetaData()
    runs = sa.Table(
        "runs", meta,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("commit", sa.String(64), nullable=False, index=True),
        sa.Column("dirty", sa.Boolean, nullable=False),
        sa.Column("commit_date", sa.String(40), nullable=False),
        sa.Column("machine", sa.Text, nullable=False),
        sa.Column("cpu", sa.Text), sa.Column("cpu_count", sa.Integer),
        sa.Column("gpu", sa.Text), sa.Column("driver", sa.Text),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("reference_commit", sa.String(64)),
        sa.Column("run_ids", sa.Text), sa.Column("records", sa.Integer),
        sa.Column("source", sa.Text),
        sa.Column("added_at", sa.String(40), nullable=False),
    )
    points = sa.Table(
        "points", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run", sa.String(64), sa.ForeignKey("runs.id"), nullable=False, index=True),
        sa.Column("series", sa.Text, nullable=False, index=True),
        sa.Column("model", sa.Text, nullable=False), sa.Column("stack", sa.Text, nullable=False),
        sa.Column("machine", sa.Text, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("low", sa.Float), sa.Column("high", sa.Float),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("higher_is_better", sa.Boolean, nullable=False),
    )
    return meta, runs, points


def safe_url(url_or_path: str) -> str:
    """The store's address as it may be shown: a URL with its password hidden."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(_as_url(url_or_path)).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL at all: show only that
        return "<unreadable store URL>"


def _as_url(url_or_path: str | os.PathLike) -> str:
    text = str(url_or_path)
    return text if "://" in text else f"sqlite:///{text}"


def _scrub(message: str, password: str | None) -> str:
    return message.replace(password, "***") if password else message


class HistoryStore:
    """A history store at a SQLAlchemy URL or a SQLite file path.

    Args:
        url_or_path: ``sqlite:///file``, ``postgresql+psycopg://user@host/db``... or a path
            (a SQLite file).
        create: create the store (file and tables) when it does not exist yet; commands that
            only read pass False, so a mistyped path is an error, not a new empty store.
    """

    def __init__(self, url_or_path: str | os.PathLike, *, create: bool = True) -> None:
        import sqlalchemy as sa

        self.shown = safe_url(str(url_or_path))
        try:
            url = sa.engine.make_url(_as_url(url_or_path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is bad input
            raise HistoryError(f"not a store URL or path: {self.shown} ({type(exc).__name__})") from None
        self._password = url.password if isinstance(url.password, str) else None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            path = Path(url.database)
            if not path.exists() and not create:
                raise HistoryError(f"no history store at {self.shown} (add runs with "
                                   "`accelbench history add`)")
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = sa.create_engine(url)
            self._meta, self.runs, self.point_table = _tables()
            with self.engine.begin() as conn:
                if create:
                    self._meta.create_all(conn)
                elif not sa.inspect(conn).has_table("points"):
                    raise HistoryError(f"{self.shown} holds no history (add runs with "
                                       "`accelbench history add`)")
        except HistoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - driver missing, server down, bad password
            raise self._error("cannot open", exc) from None

    def _error(self, doing: str, exc: BaseException) -> HistoryError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first = _scrub(first, self._password)
        return HistoryError(f"{doing} the history store {self.shown}: {type(exc).__name__}: {first}")

    def __repr__(self) -> str:
        return f"HistoryStore({self.shown!r})"

    # -- writing -------------------------------------------------------------------------
    def add_run(self, run_dir: str | os.PathLike, *, commit: str | None = None,
                commit_date: str | None = None, label: str = "run",
                reference_commit: str | None = None,
                extra: Sequence[Point] = ()) -> AddResult:
        """File the records of a run directory (or ``results.jsonl``).

        Args:
            commit, commit_date: file the run under this commit (a backfill's checked-out
                one) instead of the records' own ``environment.git_commit``; the date defaults
                to the commit's committer date (``git show`` here), else the run's time.
            label: what the run is (``run``, or a backfill's configuration key).
            reference_commit: the tree a backfill measured the commit against.
            extra: points to file with the records' own (a backfill's paired ratios).

        Raises:
            HistoryError: not a run directory, no records, no measured point, no commit.
        """
        records = _read(run_dir)
        typed = [Record.from_dict(r) for r in records]
        env = next((r.environment for r in typed if r.environment), {})
        raw_commit = commit or env.get("git_commit")
        if not raw_commit:
            raise HistoryError(f"{run_dir}: the records carry no git commit (measured outside a "
                               "git checkout?); pass --commit")
        sha, dirty = _split_commit(str(raw_commit))
        if commit:
            sha = full_commit(sha)
        machine = Machine.from_environment(env)
        points = [p for r in typed for p in record_points(r, machine.key)] + list(extra)
        if not points:
            raise HistoryError(f"{run_dir}: no measured record to file (every stack failed or "
                               "was not timed)")
        date = commit_date or commit_time(sha) or min((r.created for r in typed), default=now())
        run_id = _content_id(records, sha, label, reference_commit, extra)
        return self._insert(run_id, points, {
            "commit": sha, "dirty": dirty, "commit_date": date, "machine": machine.key,
            "cpu": machine.cpu, "cpu_count": machine.cpu_count, "gpu": machine.gpu,
            "driver": machine.driver, "label": label, "reference_commit": reference_commit,
            "run_ids": ",".join(sorted({str(r.run_id) for r in typed if r.run_id})),
            "records": len(records), "source": str(run_dir), "added_at": now()})

    def run_id_of(self, run_dir: str | os.PathLike) -> str | None:
        """The id :meth:`add_run` gives ``run_dir`` filed as it is (None without a commit), so
        a gate can leave the run out of its own history."""
        records = _read(run_dir)
        env = next((r.get("environment") for r in records if r.get("environment")), {}) or {}
        if not env.get("git_commit"):
            return None
        sha, _ = _split_commit(str(env["git_commit"]))
        return _content_id(records, sha, "run", None, ())

    def _insert(self, run_id: str, points: list[Point], row: dict[str, Any]) -> AddResult:
        import sqlalchemy as sa

        try:
            with self.engine.begin() as conn:
                if conn.execute(sa.select(self.runs.c.id).where(self.runs.c.id == run_id)).first():
                    return AddResult(0, len(points), run_id, row["commit"])
                conn.execute(self.runs.insert().values(id=run_id, **row))
                conn.execute(self.point_table.insert(), [_point_row(run_id, p) for p in points])
        except sa.exc.IntegrityError:  # another machine filed the same run meanwhile
            return AddResult(0, len(points), run_id, row["commit"])
        except Exception as exc:  # noqa: BLE001
            raise self._error("cannot write to", exc) from None
        return AddResult(len(points), 0, run_id, row["commit"])

    # -- reading -------------------------------------------------------------------------
    def points(self, **filters: Any):
        """The points as a pandas DataFrame, one row per point, columns
        :data:`POINT_COLUMNS`, sorted by series, then commit date, then time added.

        Filters (each a value or a list of values): ``series``, ``model``, ``stack``,
        ``machine``, ``settings``, ``metric``, ``commit``, ``run``, ``label``.
        """
        import pandas as pd
        import sqlalchemy as sa

        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise HistoryError(f"unknown point filter(s) {sorted(unknown)}; known: {list(FILTERS)}")
        p, r = self.point_table, self.runs
        query = sa.select(
            p.c.series, p.c.model, p.c.stack, p.c.machine, p.c.settings, p.c.metric, p.c.unit,
            p.c.higher_is_better, r.c.commit, r.c.commit_date, r.c.added_at, p.c.run, p.c.value,
            p.c.low, p.c.high,
        ).join(r, r.c.id == p.c.run)
        for name, wanted in filters.items():
            if wanted is None:
                continue
            column = {"commit": r.c.commit, "label": r.c.label}.get(name)
            column = p.c[name] if column is None else column
            values = [wanted] if isinstance(wanted, str) else list(wanted)
            query = query.where(column.in_(values))
        query = query.order_by(p.c.series, r.c.commit_date, r.c.added_at, p.c.id)
        try:
            with self.engine.connect() as conn:
                rows = [dict(m) for m in conn.execute(query).mappings()]
        except Exception as exc:  # noqa: BLE001
            raise self._error("cannot read", exc) from None
        frame = pd.DataFrame(rows, columns=list(POINT_COLUMNS))
        for col in ("value", "low", "high"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
        frame["higher_is_better"] = frame["higher_is_better"].astype(bool)
        return frame.reset_index(drop=True)

    def series(self):
        """One row per series: its key, parts, unit, points, first and last commit date."""
        frame = self.points()
        keys = ["series", "model", "stack", "machine", "settings", "metric", "unit"]
        grouped = frame.groupby(keys, sort=True, dropna=False)
        out = grouped.agg(points=("value", "size"), first=("commit_date", "min"),
                          last=("commit_date", "max")).reset_index()
        return out

    def has_run(self, *, commit: str, label: str) -> bool:
        """A run of this commit with this label is in the store (how a backfill resumes)."""
        import sqlalchemy as sa

        sha, _ = _split_commit(commit)
        query = sa.select(self.runs.c.id).where(self.runs.c.commit == sha,
                                                self.runs.c.label == label)
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).first() is not None
        except Exception as exc:  # noqa: BLE001
            raise self._error("cannot read", exc) from None

    def count(self) -> tuple[int, int]:
        """(runs, points) in the store."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            runs = conn.execute(sa.select(sa.func.count()).select_from(self.runs)).scalar_one()
            points = conn.execute(sa.select(sa.func.count()).select_from(self.point_table)).scalar_one()
        return int(runs), int(points)

    def close(self) -> None:
        """Release the store's connections."""
        self.engine.dispose()


def _read(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    target = results_path(run_dir)
    if not target.is_file():
        raise HistoryError(f"{run_dir}: not a run directory or results.jsonl (no {target.name})")
    records = list(iter_records(target))
    if not records:
        raise HistoryError(f"{run_dir}: no accelbench records in {target.name}")
    return records


def _split_commit(text: str) -> tuple[str, bool]:
    dirty = text.endswith("-dirty")
    return (text[: -len("-dirty")] if dirty else text).strip(), dirty


def _content_id(records: Iterable[dict[str, Any]], commit: str, label: str,
                reference: str | None, extra: Sequence[Point]) -> str:
    body = json.dumps({"records": sorted(json.dumps(r, sort_keys=True, default=str) for r in records),
                       "commit": commit, "label": label, "reference": reference,
                       "extra": [p.__dict__ for p in extra]}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _point_row(run_id: str, p: Point) -> dict[str, Any]:
    return {"run": run_id, "series": p.series, "model": p.model, "stack": p.stack,
            "machine": p.machine, "settings": p.settings, "metric": p.metric, "value": p.value,
            "low": p.low, "high": p.high, "unit": p.unit, "higher_is_better": p.higher_is_better}


def _git(args: list[str], repo: str | os.PathLike | None) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def commit_time(commit: str, repo: str | os.PathLike | None = None) -> str | None:
    """The committer date of ``commit`` in UTC (ISO 8601, so dates sort as text) in the git
    repository at ``repo`` (default: the working directory's), None where git does not know it."""
    stamp = _git(["show", "-s", "--format=%ct", commit], repo)
    if not stamp or not stamp.isdigit():
        return None
    return datetime.fromtimestamp(int(stamp), timezone.utc).isoformat(timespec="seconds")


def full_commit(commit: str, repo: str | os.PathLike | None = None) -> str:
    """``commit`` as its full hex name where git here knows it, else as given."""
    return _git(["rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], repo) or commit


__all__ = ["DEFAULT_PATH", "ENV_VAR", "FILTERS", "POINT_COLUMNS", "AddResult", "HistoryStore",
           "commit_time", "default_store", "full_commit", "safe_url"]
