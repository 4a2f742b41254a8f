"""What a state holds, read without its lock: for `screener report` and the HTML page.

`read_saved` returns every stored result with the last run's record (`SavedScan`), and the
thumbnails on demand; `HeatCache` keeps the page's rendered heat maps beside them. Reading
takes no lock: with WAL a read while a scan writes is safe, and must not fail as "locked".
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import StateError
from ..verdict import VideoResult
from .schema import (HEAT_SCHEMA, LAST_RUN, check_schema, read_only_uri, result_from_json,
                     tables_and_meta, unusable)

log = logging.getLogger(__name__)

SQLITE_MAX_PARAMS = 500  # bound parameters per statement, well under SQLite's limit


@dataclass
class SavedScan:
    """What a state holds for a report rebuild (`screener report`): every stored result (by
    path), the last run's header (`meta`, `finished_at`, `elapsed_s`), and the thumbnails."""
    path: Path
    results: list[tuple[bytes, VideoResult]]
    last_run: dict

    def media(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Stored `media.VideoMedia` bytes of the given files (those that have some)."""
        with _read_only(self.path) as conn:
            return {bytes(k): bytes(d) for k, d in _select(conn, "media", keys)}


class HeatCache:
    """The HTML report's rendered heat maps, kept in the state beside the thumbnails, so the
    page of an unchanged cron rerun (or `screener report`) needs no model and no TensorFlow.
    Keys name the model's SHA-256 and the face's bytes (`heatmaps.heat_key`); only the keys of
    the latest page are kept. Best effort, without the scan's lock (SQLite serialises the
    writes): a state that cannot be written costs recomputing the maps, never the page."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def get(self, keys: Iterable[str]) -> dict[str, dict]:
        out = {}
        try:
            with _read_only(self.path) as conn:
                out = {k: json.loads(d) for k, d in _select(conn, "heat", keys)}
        except (StateError, sqlite3.Error, ValueError) as e:
            log.info("heat maps not read from %s: %s", self.path, e)
        return out

    def keep(self, items: dict[str, dict]) -> None:
        """Store these and forget every other key."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        except sqlite3.Error as e:
            log.info("heat maps not kept in %s: %s", self.path, e)
            return
        try:
            conn.execute(HEAT_SCHEMA)
            have = {k for (k,) in conn.execute("SELECT key FROM heat")}
            if have == set(items):
                return
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM heat WHERE key = ?", [(k,) for k in have - set(items)])
            conn.executemany("INSERT OR REPLACE INTO heat VALUES (?, ?)",
                             [(k, json.dumps(v)) for k, v in items.items() if k not in have])
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            log.info("heat maps not kept in %s: %s", self.path, e)
        finally:
            conn.close()


def _select(conn, table: str, keys: Iterable) -> list[tuple]:
    """(key, data) rows of `table` (media or heat) for `keys`, in chunks of bound parameters;
    none when the table is not there (a state older than the table)."""
    keys = list(keys)
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone():
        return []
    rows = []
    for i in range(0, len(keys), SQLITE_MAX_PARAMS):
        chunk = keys[i:i + SQLITE_MAX_PARAMS]
        rows += conn.execute(f"SELECT key, data FROM {table} "
                             f"WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
    return rows


@contextmanager
def _read_only(path: Path):
    # No flock: reading while a scan writes is safe with WAL, and must not fail as "locked".
    try:
        conn = sqlite3.connect(read_only_uri(path), uri=True, timeout=5)
    except sqlite3.Error as e:
        raise StateError(f"cannot open the state {path}: {e}") from e
    try:
        yield conn
    finally:
        conn.close()


def read_saved(state_path: str | os.PathLike) -> SavedScan:
    """The results saved in a state file, without taking its lock. Raises StateError for a
    file that is not a whole screener state; rows that cannot be read are left out, with a
    warning."""
    path = Path(state_path)
    if not path.is_file():
        raise StateError(f"no scan state at {path}")
    try:
        with _read_only(path) as conn:
            tables, meta = tables_and_meta(conn)
            check_schema(path, conn, tables, meta)
            rows = conn.execute("SELECT key, result FROM files").fetchall()
    except sqlite3.DatabaseError as e:
        raise unusable(path, f"it is not a readable SQLite database ({e})") from e
    results, damaged = [], 0
    for key, text in rows:
        try:
            results.append((bytes(key), result_from_json(text)))
        except (TypeError, ValueError):
            damaged += 1
    if damaged:
        log.warning("state %s: %d stored row(s) could not be read (damaged) and are left out; "
                    "the next scan reads their files again", path, damaged)
    results.sort(key=lambda kr: kr[0])
    try:
        last_run = json.loads(meta.get(LAST_RUN, "{}"))
    except ValueError:
        last_run = {}
    return SavedScan(path, results, last_run if isinstance(last_run, dict) else {})
