"""In-context memory of the E-LAMs (paper section V-D, eqs. 44-46).

The memory M = {<p_i, s_i, r_i>} (eq. 44) holds, per application, the prompts the xApp
served, the vector used and the reward the emulator returned (``ReportOutcome``). For a new
translation s_t of an application's request, the k most recent records of that
application decide what is served (eq. 45):

- history too short (fewer than ``min_records``) or inconsistent (its mean angular
  distance to its own mean exceeds ``spread_max``: no single intent domain to lean on):
  s_t is served as is;
- otherwise the divergence d = Dis(s_t, s_bar) of eq. 24 (angle / pi, in [0, 0.5] for
  non-negative vectors) sets the calibration factor

      iota(d) = 1                                                   d <= low
              = 1 - (1 - iota_min) * (d - low) / (high - low)       low < d < high
              = iota_min                                            d >= high

  and s_t is replaced by iota * s_t + (1 - iota) * s_bar (eq. 46) when iota < 1;
- a failed translation falls back to s_bar for that request, or, with an empty memory, to
  the application's typical profile (INTENTS.md), or to the even vector without an
  application; the result is flagged ``fallback``.

Defaults (settings ``RAPP_CALIB_*``): low = 0.08 (about 14 degrees), high = 0.25
(45 degrees), iota_min = 0.3, spread_max = 0.15, min_records = 3, k = 8.

Records far from the application's history are quarantined, not averaged in: a new
record whose divergence (eq. 24) from the application's anchor exceeds
``QuarantineConfig.radius`` is stored (for audit) but never enters s_bar. The anchor is
the coordinate-wise median of the application's last ``anchor_records`` accepted records
(robust: a burst of outliers cannot move it), or the application's typical profile
(INTENTS.md) while fewer than ``prior_records`` are held. A record repeating a request id
already stored is not stored again.

Storage is SQLite (one file, WAL journal, ``synchronous=FULL``: a record acknowledged by
ReportOutcome survives a crash or restart), bounded per application (oldest records are
dropped first) and safe to share between threads. Reads never touch the file: each
application's recent accepted records and its anchor's sorted columns are kept in memory
(loaded at start, updated after each commit), so a translation neither waits for a
ReportOutcome's fsync nor re-reads and re-sorts up to ``anchor_records`` rows. One process
owns the file (the rApp server).
"""

from __future__ import annotations

import bisect
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agentnet.intents import APP_PROFILES, EVEN
from rapp_intent.elam.base import MemoryContext, MemoryRecord, Translation, Vector

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    prompt TEXT NOT NULL,
    w_c REAL NOT NULL, w_b REAL NOT NULL, w_l REAL NOT NULL, w_p REAL NOT NULL,
    reward REAL NOT NULL,
    created REAL NOT NULL,
    request_id TEXT NOT NULL DEFAULT '',
    quarantined INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS records_app_id ON records (app, id);
"""

_UNIQUE_REQUEST = (
    "CREATE UNIQUE INDEX IF NOT EXISTS records_request_id ON records (request_id) "
    "WHERE request_id != ''"
)


def angular_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Dis(a, b) of eq. 24: arccos of the cosine similarity, divided by pi."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    if norm == 0.0:
        raise ValueError("angular distance of a zero vector is undefined")
    return math.acos(max(-1.0, min(1.0, dot / norm))) / math.pi


@dataclass(frozen=True)
class CalibrationConfig:
    """Thresholds of the calibration (see the module docstring)."""

    low: float = 0.08
    high: float = 0.25
    iota_min: float = 0.3
    spread_max: float = 0.15
    min_records: int = 3

    def __post_init__(self) -> None:
        if not 0 <= self.low < self.high <= 0.5:
            raise ValueError("need 0 <= low < high <= 0.5")
        if not 0 <= self.iota_min <= 1:
            raise ValueError("iota_min must be in [0, 1]")

    def iota(self, divergence: float) -> float:
        """Calibration factor iota of eq. 46, falling linearly from 1 to iota_min."""
        if divergence <= self.low:
            return 1.0
        if divergence >= self.high:
            return self.iota_min
        frac = (divergence - self.low) / (self.high - self.low)
        return 1.0 - (1.0 - self.iota_min) * frac


@dataclass(frozen=True)
class QuarantineConfig:
    """Which records are too far from an application's history to be averaged in."""

    radius: float = 0.25
    """Divergence (eq. 24) from the anchor beyond which a record is quarantined. The
    project's labelled training intents lie within 0.22 of their application's median
    for 95% of them (at most 0.27); one-factor extremes such as [0.97, 0.01, 0.01, 0.01]
    lie at 0.29-0.37."""
    anchor_records: int = 1000
    """Accepted records the anchor's median is taken over."""
    prior_records: int = 20
    """Below this many accepted records the anchor is the application's profile."""
    reference_radius: float = 0.08
    """The recent mean s_bar of eq. 46 is kept within this divergence of the anchor (moved
    towards it along the segment when farther). Eight ordinary records average to within
    about 0.05 of their application's median, so this rarely bites without an attack;
    records just inside :attr:`radius` that fill the recent window can then pull s_bar
    no further than this from the long-run centre."""

    def __post_init__(self) -> None:
        if not 0 < self.radius <= 0.5 or not 0 < self.reference_radius <= 0.5:
            raise ValueError("radius and reference_radius must be in (0, 0.5]")
        if self.anchor_records < 1 or self.prior_records < 1:
            raise ValueError("anchor_records and prior_records must be at least 1")


@dataclass(frozen=True)
class Appended:
    """What :meth:`Memory.append` did with a record.

    Attributes:
        count: records now held for the application (quarantined ones included).
        stored: False when the request id was already stored (nothing changed).
        quarantined: stored, but too far from the history to be averaged in.
        divergence: Dis(record, anchor) (eq. 24), None without an anchor.
    """

    count: int
    stored: bool = True
    quarantined: bool = False
    divergence: float | None = None


@dataclass(frozen=True)
class Served:
    """What the memory made of a translation.

    Attributes:
        vector: the vector to serve.
        calibrated: eq. 46 moved it towards the recent mean.
        fallback: the E-LAM failed; ``vector`` is the fallback.
        iota: calibration factor applied (1 when not calibrated).
        divergence: Dis(s_t, s_bar), None without a usable history.
        source: ``elam``, ``calibrated``, ``recent_mean``, ``app_profile`` or ``even``.
    """

    vector: Vector
    calibrated: bool = False
    fallback: bool = False
    iota: float = 1.0
    divergence: float | None = None
    source: str = "elam"


def clamp_to_anchor(mean: Vector, anchor: Vector, radius: float) -> Vector:
    """``mean`` moved along the segment towards ``anchor`` until its divergence from the
    anchor is at most ``radius`` (unchanged when it already is)."""
    if angular_distance(mean, anchor) <= radius:
        return mean
    lo, hi = 0.0, 1.0  # fraction of the way from the anchor to the mean
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        point = [a + mid * (m - a) for a, m in zip(anchor, mean, strict=True)]
        if angular_distance(point, anchor) <= radius:
            lo = mid
        else:
            hi = mid
    point = [a + lo * (m - a) for a, m in zip(anchor, mean, strict=True)]
    total = sum(point)
    return tuple(x / total for x in point)  # type: ignore[return-value]


def apply_memory(
    translation: Translation,
    context: MemoryContext,
    cfg: CalibrationConfig,
    reference_radius: float = QuarantineConfig.reference_radius,
) -> Served:
    """Decide the vector served for one translation (eqs. 45, 46 and the fallback)."""
    mean = context.mean
    if mean is not None and context.anchor is not None:
        mean = clamp_to_anchor(mean, context.anchor, reference_radius)
    if not translation.ok:
        if mean is not None:
            return Served(mean, fallback=True, source="recent_mean")
        if context.app in APP_PROFILES:
            return Served(APP_PROFILES[context.app], fallback=True, source="app_profile")
        return Served(EVEN, fallback=True, source="even")
    s = translation.vector
    assert s is not None
    if mean is None or len(context.records) < cfg.min_records:
        return Served(s)
    spread = sum(angular_distance(r.vector, mean) for r in context.records) / len(context.records)
    divergence = angular_distance(s, mean)
    if spread > cfg.spread_max:
        return Served(s, divergence=divergence)
    iota = cfg.iota(divergence)
    if iota >= 1.0:
        return Served(s, divergence=divergence)
    mixed = [iota * a + (1.0 - iota) * b for a, b in zip(s, mean, strict=True)]
    total = sum(mixed)
    vector = tuple(x / total for x in mixed)
    return Served(
        vector,  # type: ignore[arg-type]
        calibrated=True,
        iota=iota,
        divergence=divergence,
        source="calibrated",
    )


def _median_vector(columns: Sequence[Sequence[float]]) -> Vector | None:
    """Coordinate-wise median of sorted columns, normalised (None when it sums to 0)."""
    n = len(columns[0])
    mid = n // 2
    med = [c[mid] if n % 2 else 0.5 * (c[mid - 1] + c[mid]) for c in columns]
    total = sum(med)
    if total <= 0:
        return None
    return tuple(x / total for x in med)  # type: ignore[return-value]


class _AppView:
    """What reads need of one application, kept in step with its rows.

    ``ids`` are the application's stored rows (all of them, oldest first, as the
    ``max_records`` bound keeps them); ``accepted`` the last ``anchor_records`` accepted
    ones, with each column of their vectors kept sorted for the anchor's median.
    """

    def __init__(self, anchor_records: int):
        self.anchor_records = anchor_records
        self.ids: deque[int] = deque()
        self.accepted: deque[tuple[int, MemoryRecord]] = deque()
        self.columns: list[list[float]] = [[], [], [], []]

    def add(self, row_id: int, record: MemoryRecord, quarantined: bool, max_records: int) -> None:
        self.ids.append(row_id)
        if not quarantined:
            self.accepted.append((row_id, record))
            for col, x in zip(self.columns, record.vector, strict=True):
                bisect.insort(col, x)
            if len(self.accepted) > self.anchor_records:
                self._drop_oldest_accepted()
        while len(self.ids) > max_records:
            gone = self.ids.popleft()
            if self.accepted and self.accepted[0][0] == gone:
                self._drop_oldest_accepted()

    def _drop_oldest_accepted(self) -> None:
        _, old = self.accepted.popleft()
        for col, x in zip(self.columns, old.vector, strict=True):
            del col[bisect.bisect_left(col, x)]

    def recent(self, k: int) -> tuple[MemoryRecord, ...]:
        n = len(self.accepted)
        return tuple(self.accepted[i][1] for i in range(n - 1, max(n - k, 0) - 1, -1))


class Memory:
    """Persistent, bounded, thread-safe store of memory records (eq. 44).

    Args:
        path: SQLite file (created with its folder when missing); ``":memory:"`` for a
            throw-away store.
        max_records: records kept per application.
        quarantine: when a record is too far from the history to be averaged in.
    """

    def __init__(
        self,
        path: Path | str,
        max_records: int = 1000,
        quarantine: QuarantineConfig | None = None,
    ):
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.path = str(path)
        self.max_records = max_records
        self.quarantine = quarantine or QuarantineConfig()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # the database: one writer at a time
        self._views_lock = threading.Lock()  # the in-memory views: held for microseconds
        self._views: dict[str, _AppView] = {}
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._migrate()
            self._load_views()

    def _load_views(self) -> None:
        rows = self._db.execute(
            "SELECT id, app, prompt, w_c, w_b, w_l, w_p, reward, created, quarantined "
            "FROM records ORDER BY id"
        )
        for row_id, app, prompt, *vector, reward, created, quarantined in rows:
            record = MemoryRecord(prompt=prompt, vector=tuple(vector), reward=reward, app=app,
                                  created=created)  # fmt: skip
            self._view(app).add(row_id, record, bool(quarantined), self.max_records)

    def _view(self, app: str) -> _AppView:
        view = self._views.get(app)
        if view is None:
            view = self._views[app] = _AppView(self.quarantine.anchor_records)
        return view

    def _migrate(self) -> None:
        """Bring a memory file written before quarantine and request-id uniqueness up to
        date: add the column, keep the first record of a repeated request id."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
        if "quarantined" not in columns:
            self._db.execute(
                "ALTER TABLE records ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0"
            )
        self._db.execute(
            "DELETE FROM records WHERE request_id != '' AND id NOT IN "
            "(SELECT MIN(id) FROM records WHERE request_id != '' GROUP BY request_id)"
        )
        self._db.execute(_UNIQUE_REQUEST)

    def anchor(self, app: str) -> Vector | None:
        """The application's anchor: the median of its recent accepted records, or its
        profile while it has few (None for an unknown application without history)."""
        with self._views_lock:
            return self._anchor(app)

    def _anchor(self, app: str) -> Vector | None:
        view = self._views.get(app)
        if view is None or len(view.accepted) < self.quarantine.prior_records:
            return APP_PROFILES.get(app)
        return _median_vector(view.columns) or APP_PROFILES.get(app)

    def append(self, record: MemoryRecord, request_id: str = "") -> Appended:
        """Store a record (dropping the application's oldest beyond the bound); a record
        far from the application's anchor is quarantined, a repeated request id ignored.

        Returns:
            What was done (:class:`Appended`).
        """
        if not math.isfinite(record.reward):
            raise ValueError("reward must be finite")
        created = record.created or time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if (
                    request_id
                    and self._db.execute(
                        "SELECT 1 FROM records WHERE request_id = ?", (request_id,)
                    ).fetchone()
                ):
                    (count,) = self._db.execute(
                        "SELECT COUNT(*) FROM records WHERE app = ?", (record.app,)
                    ).fetchone()
                    self._db.execute("COMMIT")
                    return Appended(int(count), stored=False)
                with self._views_lock:
                    anchor = self._anchor(record.app)
                divergence = None if anchor is None else angular_distance(record.vector, anchor)
                quarantined = divergence is not None and divergence > self.quarantine.radius
                row_id = self._db.execute(
                    "INSERT INTO records (app, prompt, w_c, w_b, w_l, w_p, reward, created,"
                    " request_id, quarantined) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.app, record.prompt, *record.vector, record.reward, created,
                     request_id, int(quarantined)),
                ).lastrowid  # fmt: skip
                self._db.execute(
                    "DELETE FROM records WHERE app = ? AND id NOT IN "
                    "(SELECT id FROM records WHERE app = ? ORDER BY id DESC LIMIT ?)",
                    (record.app, record.app, self.max_records),
                )
                (count,) = self._db.execute(
                    "SELECT COUNT(*) FROM records WHERE app = ?", (record.app,)
                ).fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            stored = MemoryRecord(prompt=record.prompt, vector=tuple(map(float, record.vector)),
                                  reward=record.reward, app=record.app, created=created)  # fmt: skip
            with self._views_lock:
                self._view(record.app).add(row_id, stored, quarantined, self.max_records)
        return Appended(int(count), quarantined=quarantined, divergence=divergence)

    def recent(self, app: str, k: int) -> tuple[MemoryRecord, ...]:
        """The k most recent accepted (not quarantined) records of ``app``, newest first."""
        if k <= self.quarantine.anchor_records:
            with self._views_lock:
                view = self._views.get(app)
                return view.recent(k) if view is not None else ()
        with self._lock:
            rows = self._db.execute(
                "SELECT prompt, w_c, w_b, w_l, w_p, reward, app, created FROM records "
                "WHERE app = ? AND quarantined = 0 ORDER BY id DESC LIMIT ?",
                (app, k),
            ).fetchall()
        return tuple(
            MemoryRecord(
                prompt=r[0], vector=(r[1], r[2], r[3], r[4]), reward=r[5], app=r[6], created=r[7]
            )
            for r in rows
        )

    def context(self, app: str | None, k: int) -> MemoryContext:
        """Memory context of a request of ``app`` (no records without an application)."""
        if not app:
            return MemoryContext(app=None)
        if k > self.quarantine.anchor_records:
            with self._views_lock:
                anchor = self._anchor(app)
            return MemoryContext(app=app, records=self.recent(app, k), anchor=anchor)
        with self._views_lock:
            view = self._views.get(app)
            records = view.recent(k) if view is not None else ()
            return MemoryContext(app=app, records=records, anchor=self._anchor(app))

    def quarantined(self, app: str | None = None) -> int:
        """Quarantined records held (for one application, or in total)."""
        with self._lock:
            sql = "SELECT COUNT(*) FROM records WHERE quarantined = 1"
            args: tuple = ()
            if app is not None:
                sql += " AND app = ?"
                args = (app,)
            (n,) = self._db.execute(sql, args).fetchone()
        return int(n)

    def size(self, app: str | None = None) -> int:
        """Records held (for one application, or in total)."""
        with self._lock:
            if app is None:
                (n,) = self._db.execute("SELECT COUNT(*) FROM records").fetchone()
            else:
                (n,) = self._db.execute(
                    "SELECT COUNT(*) FROM records WHERE app = ?", (app,)
                ).fetchone()
        return int(n)

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()
