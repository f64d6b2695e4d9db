"""Sample JSON and JSON Lines files for ``json_backfill``: users and events with nested documents.

``write_json_files(folder, files=4, records=1000, seed=0, bad_every=0)`` writes ``files`` files,
alternating between the two collections (``users_NNNN``, ``events_NNNN``) and between the two formats
(a JSON array with one record per line, and JSON Lines), so both readers are exercised. Documents have
nested objects and arrays, optional fields that are sometimes absent or null, and non-ASCII text.

With ``bad_every=N`` every N-th record of a file is bad, alternating between a line that is not JSON at
all (JSON Lines files only: in a JSON array a broken line would break the whole file) and a record
that misses its required key. The returned :class:`JsonSample` lists every bad record by file and
line, which is what a dead-letter test compares against.

The output is byte-for-byte the same for the same arguments (no clock, fixed key order).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
KINDS = ("users", "events")
REQUIRED = {"users": "id", "events": "event_id"}

_COUNTRIES = ("DE", "FR", "US", "JP", "BR", "NG", "IN", "GB")
_TAGS = ("beta", "vip", "churn-risk", "newsletter", "mobile", "enterprise")
_EVENT_TYPES = ("login", "logout", "purchase", "page_view", "search", "refund")
_NAMES = ("Zoë", "Åsa", "Björn", "Chen Wei", "Olu", "Priya", "Łukasz", "Renée", "Mateo", "Yuki")


@dataclass(frozen=True)
class BadRecord:
    """One injected bad record: which file, which line (1-based), and why it is bad."""

    path: str
    line: int
    reason: str  # "malformed_json" or "missing_required_field"


@dataclass(frozen=True)
class JsonFile:
    """One written file: its collection (users / events), format (json / jsonl) and record counts."""

    path: str
    kind: str
    fmt: str
    records: int
    good: int
    bad: int


@dataclass
class JsonSample:
    """What :func:`write_json_files` wrote."""

    folder: str
    files: list[JsonFile] = field(default_factory=list)
    bad_records: list[BadRecord] = field(default_factory=list)

    @property
    def good(self) -> int:
        """Records that a loader must load."""
        return sum(f.good for f in self.files)

    @property
    def bad(self) -> int:
        """Records that a loader must send to the dead letters."""
        return sum(f.bad for f in self.files)

    def good_by_kind(self) -> dict[str, int]:
        """Good records per collection (users, events)."""
        out = dict.fromkeys(KINDS, 0)
        for f in self.files:
            out[f.kind] += f.good
        return out


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def make_user(rng: random.Random, n: int) -> dict[str, Any]:
    """One user document (``id`` is required)."""
    created = EPOCH + dt.timedelta(seconds=rng.randint(0, 180 * 86400))
    name = rng.choice(_NAMES)
    doc: dict[str, Any] = {
        "id": f"u-{n:07d}",
        "email": f"user{n}@example.com",
        "name": name,
        "active": rng.random() < 0.8,
        "created_at": _iso(created),
        "profile": {
            "age": rng.randint(18, 90) if rng.random() < 0.9 else None,
            "country": rng.choice(_COUNTRIES),
            "tags": rng.sample(_TAGS, rng.randint(0, 3)),
            "address": {"city": f"City {rng.randint(1, 300)}", "zip": f"{rng.randint(10000, 99999)}"},
        },
        "score": round(rng.uniform(0, 100), 3),
    }
    if rng.random() < 0.3:
        doc["referrer"] = f"u-{rng.randint(1, max(1, n)):07d}"
    return doc


def make_event(rng: random.Random, n: int, users: int) -> dict[str, Any]:
    """One event document (``event_id`` is required); ``user_id`` refers to a user of the sample."""
    kind = rng.choice(_EVENT_TYPES)
    payload: dict[str, Any] = {
        "session": f"s-{rng.getrandbits(40):010x}",
        "ua": rng.choice(("ios", "android", "web")),
    }
    if kind in ("purchase", "refund"):
        payload["items"] = [
            {
                "sku": f"SKU-{rng.randint(1, 999):03d}",
                "qty": rng.randint(1, 3),
                "price": round(rng.uniform(1, 200), 2),
            }
            for _ in range(rng.randint(1, 3))
        ]
        payload["amount"] = round(sum(i["qty"] * i["price"] for i in payload["items"]), 2)
    elif kind == "search":
        payload["query"] = rng.choice(("grüne schuhe", "café", "ノートパソコン", '"quoted" term', "a\\b"))
    return {
        "event_id": f"e-{n:09d}",
        "user_id": f"u-{rng.randint(1, max(1, users)):07d}",
        "type": kind,
        "ts": _iso(EPOCH + dt.timedelta(milliseconds=rng.randint(0, 180 * 86400 * 1000))),
        "payload": payload,
    }


def write_json_files(
    folder: str | Path,
    *,
    files: int = 4,
    records: int = 1000,
    seed: int = 0,
    bad_every: int = 0,
) -> JsonSample:
    """Write ``files`` files of ``records`` records each into ``folder``; returns what was written.

    File ``i`` (0-based) holds ``users`` when ``i`` is even, ``events`` when odd; it is a JSON array
    (``.json``) when ``i // 2`` is even, JSON Lines (``.jsonl``) otherwise. Existing files of the same
    names are overwritten; other files in ``folder`` are left alone.
    """
    if files < 0 or records < 0 or bad_every < 0:
        raise ValueError("files, records and bad_every must not be negative")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"cutover-json:{seed}")
    sample = JsonSample(folder=str(out))
    counters = dict.fromkeys(KINDS, 0)
    users_total = records * ((files + 1) // 2)
    for i in range(files):
        kind = KINDS[i % 2]
        fmt = "json" if (i // 2) % 2 == 0 else "jsonl"
        path = out / f"{kind}_{i // 2 + 1:04d}.{fmt}"
        lines: list[str] = []
        good = bad = 0
        for j in range(records):
            counters[kind] += 1
            n = counters[kind]
            doc = make_user(rng, n) if kind == "users" else make_event(rng, n, users_total)
            line_no = j + 1 if fmt == "jsonl" else j + 2  # a JSON array opens with "[" on line 1
            is_bad = bad_every > 0 and (j + 1) % bad_every == 0
            if is_bad:
                bad += 1
                if fmt == "jsonl" and ((j + 1) // bad_every) % 2 == 1:
                    text = json.dumps(doc, ensure_ascii=False)[:-7] + ', "broken": }'
                    reason = "malformed_json"
                else:
                    doc.pop(REQUIRED[kind])
                    text = json.dumps(doc, ensure_ascii=False)
                    reason = "missing_required_field"
                sample.bad_records.append(BadRecord(str(path), line_no, reason))
            else:
                good += 1
                text = json.dumps(doc, ensure_ascii=False)
            lines.append(text)
        if fmt == "jsonl":
            body = "".join(line + "\n" for line in lines)
        else:
            body = "[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n"
        path.write_text(body, encoding="utf-8")
        sample.files.append(JsonFile(str(path), kind, fmt, records, good, bad))
    return sample
