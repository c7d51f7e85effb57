"""The spool: store calls kept on disk while a store is down, and the quarantine for calls it refuses.

A call is one JSON line `{"v": 1, "op": ..., ...}` (docs/reliability.md). Each store has one spool
(`spool_path`); beside it live the quarantine (`*.quarantine.jsonl`: calls refused for good, each
with its error) and the lines that could not be read (`*.corrupt`). Replay claims the spool by
renaming it, sends every readable line, sets aside unreadable ones, quarantines refused rows and puts
back what an outage stopped; upserts on the natural key and timestamped statuses make a repeat harmless.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from predictions.errors import is_transient
from predictions.store.records import PredictionRow, RolloutRow

logger = logging.getLogger(__name__)

SPOOL_VERSION = 1
OPS = ("write_predictions", "write_rollouts", "start_job", "finish_job")
ROW_OPS = ("write_predictions", "write_rollouts")
"""Calls that carry rows: a refused one is split down to the refused rows."""
FALLBACK_SPOOL = ".predictions/spool.jsonl"
NOT_ARGUMENTS = ("v", "op", "job_id", "rows", "error", "quarantined_at")
"""Keys of a spooled (or quarantined) call that are not arguments of the store method."""
_FILE_LOCK = threading.RLock()
"""One append at a time in this process, so lines from the writer thread and a closer never interleave."""


# where


def spool_path(store: Any = None) -> Path:
    """The spool of a store: PREDICTIONS_SPOOL, else beside a SQLite file, else per Supabase project.

    Without a store object (it could not be opened) the environment that `open_store()` reads decides.
    """
    if os.environ.get("PREDICTIONS_SPOOL"):
        return Path(os.environ["PREDICTIONS_SPOOL"])
    path = getattr(store, "path", None)
    if isinstance(path, str | os.PathLike):
        return beside_database(Path(path))
    url = getattr(store, "url", None) if store is not None else os.environ.get("SUPABASE_URL")
    if url:
        return project_spool(url)
    if store is None:
        from predictions.store import DEFAULT_DB_PATH

        return beside_database(Path(os.environ.get("PREDICTIONS_DB") or DEFAULT_DB_PATH))
    return Path(FALLBACK_SPOOL)


def beside_database(path: Path) -> Path:
    return path.with_name(f"{path.stem}.spool.jsonl")


def project_spool(url: str) -> Path:
    """`<user cache dir>/predictions/spool/<project host>.spool.jsonl`: one spool per Supabase project."""
    from platformdirs import user_cache_path

    host = urlsplit(url).netloc or url
    name = re.sub(r"[^A-Za-z0-9.-]", "_", host)
    return user_cache_path("predictions") / "spool" / f"{name}.spool.jsonl"


def quarantine_path(spool: Path) -> Path:
    return spool.with_name(f"{spool.name.removesuffix('.jsonl').removesuffix('.spool')}.quarantine.jsonl")


def corrupt_path(spool: Path) -> Path:
    return spool.with_name(f"{spool.name}.corrupt")


# the calls


def send(store: Any, call: dict[str, Any]) -> None:
    """Make one store call from its queued (or spooled) form."""
    details = {key: value for key, value in call.items() if key not in NOT_ARGUMENTS}
    if call["op"] == "write_predictions":
        store.write_predictions([PredictionRow(**row) for row in call["rows"]])
    elif call["op"] == "write_rollouts":
        store.write_rollouts([RolloutRow(**row) for row in call["rows"]])
    elif call["op"] == "start_job":
        store.start_job(call["job_id"], **details)
    elif call["op"] == "finish_job":
        store.finish_job(call["job_id"], **details)
    else:
        raise ValueError(f"unknown spooled call {call['op']!r}")


def deliver(store: Any, call: dict[str, Any], spool: Path) -> None:
    """Send a call; when the store refuses it for good, split it down to the refused rows and quarantine
    them, storing the rest. Raises only transient errors (the caller retries or spools the call)."""
    try:
        send(store, call)
        return
    except Exception as error:
        if is_transient(error):
            raise
        refusal = error
    rows = call.get("rows") or []
    if call["op"] not in ROW_OPS or len(rows) <= 1:
        quarantine(spool, call, refusal)
        return
    half = len(rows) // 2
    deliver(store, {**call, "rows": rows[:half]}, spool)
    deliver(store, {**call, "rows": rows[half:]}, spool)


def quarantine(spool: Path, call: dict[str, Any], error: BaseException) -> None:
    """Keep a refused call with its error beside the spool, and say so in the log."""
    path = quarantine_path(spool)
    stamped = {**call, "error": f"{type(error).__name__}: {error}", "quarantined_at": now_text()}
    append_lines(path, [stamped])
    logger.error("predictions store refused %s for good: %s; quarantined in %s", describe(call), error, path)


def describe(call: dict[str, Any]) -> str:
    """A call as people name it: 'job j step 8 sample 3' or 'the finish_job call of job j'."""
    rows = call.get("rows")
    if call.get("op") not in ROW_OPS or not rows:
        return f"the {call.get('op')} call of job {call.get('job_id')!r}"
    first = rows[0]
    where = f"{len(rows)} row(s) of job {first.get('job_id')!r} step {first.get('step')}"
    if call["op"] == "write_rollouts":
        keys = ", ".join(f"{row.get('group_index')}/{row.get('completion_index')}" for row in rows)
        return f"{where} (generation {first.get('generation')}, group/completion {keys})"
    return f"{where} (sample {', '.join(str(row.get('sample_index')) for row in rows)})"


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# the files


def append_spool(spool: Path, calls: Sequence[dict[str, Any]]) -> bool:
    """Append calls to the spool; a failure is logged with the calls, the last place they exist."""
    return append_lines(spool, calls)


def append_lines(path: Path, calls: Sequence[dict[str, Any]]) -> bool:
    """Append versioned JSON lines in one write, flushed to disk; False (logged) when it cannot."""
    text = "".join(json.dumps({"v": SPOOL_VERSION, **call}, default=str) + "\n" for call in calls)
    try:
        with _FILE_LOCK:
            path.parent.mkdir(parents=True, exist_ok=True)
            if torn(path):  # a torn last line must not swallow the first line of this append
                text = "\n" + text
            with path.open("a", encoding="utf-8", errors="surrogatepass") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        return True
    except OSError:
        logger.exception("cannot write the predictions spool %s; lost calls: %s", path, list(calls))
        return False


def torn(path: Path) -> bool:
    """True when the file's last line has no newline: an append was cut short (a kill, a full disk)."""
    try:
        with path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except OSError:  # no file, or an empty one
        return False


def parse_line(line: str) -> dict[str, Any] | None:
    """A spooled call, or None when the line is not one (truncated, garbled, an unknown version)."""
    try:
        call = json.loads(line)
    except ValueError:
        return None
    if not isinstance(call, dict) or call.get("v", SPOOL_VERSION) != SPOOL_VERSION:
        return None
    return call if call.get("op") in OPS else None


def read_calls(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The readable calls of a spool file and its unreadable lines."""
    calls, bad = [], []
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    for line in text.splitlines():
        if line.strip():
            call = parse_line(line)
            calls.append(call) if call is not None else bad.append(line)
    return calls, bad


@dataclass
class Replay:
    """What one replay did: calls stored (or quarantined), put back for later, and lines set aside."""

    stored: int = 0
    pending: int = 0
    corrupt: int = 0
    errors: list[str] = field(default_factory=list)


def replay_spool(store: Any, spool: str | os.PathLike[str]) -> Replay:
    """Send every spooled call in order; an outage puts the rest back, nothing else stops the replay.

    The spool is first renamed, so a writer appending meanwhile starts a new file and nothing is read
    twice; unreadable lines go to `*.corrupt`, refused rows to the quarantine.
    """
    spool = Path(spool)
    result = Replay()
    claimed = claim(spool)
    if claimed is None:
        return result
    calls, bad = [], []
    for path in claimed:
        readable, unreadable = read_calls(path)
        calls, bad = calls + readable, bad + unreadable
    set_aside(spool, bad, result)
    for position, call in enumerate(calls):
        try:
            deliver(store, call, spool)
        except Exception as error:
            logger.warning("predictions store unavailable during replay of %s: %s", spool, error)
            result.errors.append(str(error))
            result.pending = len(calls) - position
            if not append_spool(spool, calls[position:]):
                return result  # the claimed file stays: its calls are not lost
            break
        result.stored += 1
    for path in claimed:
        path.unlink()
    return result


def claim(spool: Path) -> list[Path] | None:
    """Rename the spool to a name of this process's own; adopt files a killed replay left claimed."""
    claimed = [path for path in spool.parent.glob(f"{glob.escape(spool.name)}.*.replaying") if orphaned(path)]
    if spool.exists():
        mine = spool.with_name(f"{spool.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.replaying")
        os.replace(spool, mine)
        claimed.append(mine)
    return claimed or None


def orphaned(path: Path) -> bool:
    """True when the process that claimed this file is gone (the pid is in its name)."""
    pid = path.name.rsplit(".", 2)[-2].split("-")[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def set_aside(spool: Path, lines: list[str], result: Replay) -> None:
    """Move unreadable lines to `*.corrupt` (as they were), and say so."""
    if not lines:
        return
    path = corrupt_path(spool)
    result.corrupt = len(lines)
    try:
        with _FILE_LOCK, path.open("a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
    except OSError:
        logger.exception("cannot keep unreadable predictions spool lines in %s: %s", path, lines)
        return
    logger.warning("%s unreadable line(s) of the predictions spool %s moved to %s", len(lines), spool, path)
