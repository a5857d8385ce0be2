"""The emulator's journal: every request it issued and how each was settled, on disk.

An emulator killed with requests pending (SIGKILL, a node lost) would otherwise forget
them: their decisions would reach nobody and the requests would never be settled. With a
journal, the restarted emulator takes up the same run (same request-id prefix, the same
count towards ``--requests``), restores the pending requests with fresh deadlines and
re-announces them; a decision the xApp already made is re-published by the xApp and
settles the request once.

SQLite in WAL mode: a committed row survives the process being killed (the write is in
the operating system's buffers), which is what a crash of the emulator needs; fsync per
commit (``synchronous=FULL``) would also survive a power cut at a cost per request, so
it is a setting.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY,
    request_id TEXT UNIQUE NOT NULL,
    prompt TEXT NOT NULL,
    app TEXT NOT NULL,
    w_c REAL NOT NULL, w_b REAL NOT NULL, w_l REAL NOT NULL, w_p REAL NOT NULL,
    timestamp_ns INTEGER NOT NULL,
    code TEXT
);
CREATE INDEX IF NOT EXISTS pending ON requests (code) WHERE code IS NULL;
"""


@dataclass(frozen=True)
class JournalRequest:
    """A request as journaled (the true vector included: the journal stays private)."""

    request_id: str
    prompt: str
    app: str
    true_vector: tuple[float, float, float, float]
    timestamp_ns: int


@dataclass(frozen=True)
class JournalState:
    """What a restarted emulator takes up."""

    run_id: str
    issued: int
    pending: tuple[JournalRequest, ...]
    settled: tuple[tuple[str, str], ...]
    """(request id, code) of the most recently settled requests, oldest first."""


class JournalMismatch(ValueError):
    """The journal belongs to another network or seed."""


class Journal:
    """The journal file of one emulator (one network, one seed).

    Args:
        path: the SQLite file (created with its folder).
        network: the network name; a journal of another network is refused.
        seed: the emulator seed; a journal of another seed is refused.
        durable: fsync every commit (survives a power cut, slower).
    """

    def __init__(self, path: str | Path, network: str, seed: int, *, durable: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.executescript(SCHEMA)
        ident = {"network": network, "seed": str(seed)}
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        for key, value in ident.items():
            if key in rows and rows[key] != value:
                raise JournalMismatch(
                    f"journal {self.path} is of {key} {rows[key]!r}, not {value!r}; "
                    "use another file or remove it"
                )
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", ident.items()
            )

    def state(self, keep_settled: int) -> JournalState | None:
        """The run to take up, or None for a new journal."""
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if "run_id" not in meta:
            return None
        issued = self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        pending = tuple(
            JournalRequest(rid, prompt, app, (wc, wb, wl, wp), ts)
            for rid, prompt, app, wc, wb, wl, wp, ts in self._db.execute(
                "SELECT request_id, prompt, app, w_c, w_b, w_l, w_p, timestamp_ns "
                "FROM requests WHERE code IS NULL ORDER BY seq"
            )
        )
        settled = tuple(
            reversed(
                self._db.execute(
                    "SELECT request_id, code FROM requests WHERE code IS NOT NULL "
                    "ORDER BY seq DESC LIMIT ?",
                    (keep_settled,),
                ).fetchall()
            )
        )
        return JournalState(meta["run_id"], int(issued), pending, settled)

    def begin(self, run_id: str) -> None:
        """Record the run id of a new run."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('run_id', ?)", (run_id,)
            )

    def issue(self, req: JournalRequest) -> None:
        """Record an issued request (before it is published)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO requests (request_id, prompt, app, w_c, w_b, w_l, w_p, "
                "timestamp_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (req.request_id, req.prompt, req.app, *req.true_vector, req.timestamp_ns),
            )

    def settle(self, request_id: str, code: str) -> None:
        """Record how a request was settled."""
        with self._lock:
            self._db.execute(
                "UPDATE requests SET code = ? WHERE request_id = ? AND code IS NULL",
                (code, request_id),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
