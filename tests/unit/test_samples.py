"""Sample generators: deterministic by seed, sized by their parameters, with the shape the pipelines need."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cutover.samples import complaints, json_files, tenants


def _digest(items: object) -> str:
    return hashlib.sha256(repr(list(items)).encode()).hexdigest()  # type: ignore[call-overload]


def test_tenant_sizes_are_skewed_and_sum_to_rows() -> None:
    sizes = tenants.tenant_sizes(8, 10_000)
    assert sum(sizes) == 10_000 and min(sizes) >= 1
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 5 * sizes[-1]
    assert tenants.tenant_sizes(5, 5) == [1, 1, 1, 1, 1]
    with pytest.raises(ValueError):
        tenants.tenant_sizes(3, 2)


def test_tenant_rows_are_deterministic_by_seed() -> None:
    a = _digest(tenants.generate_rows(tenants=5, rows=600, seed=7))
    assert a == _digest(tenants.generate_rows(tenants=5, rows=600, seed=7))
    assert a != _digest(tenants.generate_rows(tenants=5, rows=600, seed=8))


def test_tenant_rows_are_consistent() -> None:
    rows: dict[str, list[tuple]] = {t: [] for t in tenants.TABLES}
    for table, row in tenants.generate_rows(tenants=4, rows=400, seed=1):
        assert len(row) == len(tenants.COLUMNS[table])
        rows[table].append(row)
    assert len(rows["tenants"]) == 4 and len(rows["orders"]) == 400
    customer_tenant = {c[0]: c[1] for c in rows["customers"]}
    order_tenant = {o[0]: o[1] for o in rows["orders"]}
    assert all(customer_tenant[o[2]] == o[1] for o in rows["orders"])  # no cross-tenant reference
    assert all(order_tenant[i[2]] == i[1] for i in rows["order_items"])
    assert all(order_tenant[i[2]] == i[1] for i in rows["invoices"])
    for table in tenants.TABLES[1:]:
        ids = [r[0] for r in rows[table]]
        assert len(ids) == len(set(ids)), table
    # an order's total is the sum of its items
    totals: dict[int, object] = {}
    for item in rows["order_items"]:
        totals[item[2]] = totals.get(item[2], 0) + item[4] * item[5]  # type: ignore[operator]
    assert all(totals[o[0]] == o[4] for o in rows["orders"])
    # names that are not safe identifiers, as in the field
    assert any("'" in t[2] or ";" in t[2] for t in rows["tenants"])
    counts = tenants.expected_counts(tenants=4, rows=400, seed=1)
    assert counts == {t: len(r) for t, r in rows.items()}


def test_json_files_deterministic(tmp_path: Path) -> None:
    a = json_files.write_json_files(tmp_path / "a", files=4, records=50, seed=3, bad_every=7)
    b = json_files.write_json_files(tmp_path / "b", files=4, records=50, seed=3, bad_every=7)
    c = json_files.write_json_files(tmp_path / "c", files=4, records=50, seed=4, bad_every=7)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["events_0001.json", "events_0002.jsonl", "users_0001.json", "users_0002.jsonl"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "users_0001.json").read_bytes() != (
        tmp_path / "c" / "users_0001.json"
    ).read_bytes()
    assert a.good == b.good and len(a.bad_records) == len(b.bad_records) and c.files


def test_json_files_bad_records_are_where_the_manifest_says(tmp_path: Path) -> None:
    sample = json_files.write_json_files(tmp_path, files=4, records=30, seed=0, bad_every=5)
    assert sample.bad == 4 * 6 and sample.good == 4 * 24
    assert sample.good_by_kind() == {"users": 48, "events": 48}
    bad = {(b.path, b.line): b.reason for b in sample.bad_records}
    assert {"malformed_json", "missing_required_field"} == set(bad.values())
    seen_good = 0
    for f in sample.files:
        text = Path(f.path).read_text(encoding="utf-8")
        required = json_files.REQUIRED[f.kind]
        if f.fmt == "json":
            docs = json.loads(text)  # a JSON array file stays valid JSON: its bad records miss a key
            assert len(docs) == f.records
            for j, doc in enumerate(docs):
                reason = bad.get((f.path, j + 2))
                assert (required not in doc) == (reason == "missing_required_field")
                seen_good += required in doc
            assert text.splitlines()[1].rstrip(",") == json.dumps(
                docs[0], ensure_ascii=False
            )  # record j: line j+2
        else:
            for n, line in enumerate(text.splitlines(), start=1):
                reason = bad.get((f.path, n))
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError:
                    assert reason == "malformed_json"
                    continue
                assert (required not in doc) == (reason == "missing_required_field")
                seen_good += required in doc
    assert seen_good == sample.good


def test_json_documents_are_nested() -> None:
    import random

    user = json_files.make_user(random.Random(1), 1)
    assert isinstance(user["profile"], dict) and isinstance(user["profile"]["tags"], list)
    assert isinstance(user["profile"]["address"], dict)
    event = json_files.make_event(random.Random(2), 1, 10)
    assert event["user_id"].startswith("u-") and isinstance(event["payload"], dict)


def test_no_bad_records_by_default(tmp_path: Path) -> None:
    sample = json_files.write_json_files(tmp_path, files=3, records=10)
    assert sample.bad == 0 and sample.good == 30 and len(sample.files) == 3


def test_complaints_deterministic_and_labelled() -> None:
    a = list(complaints.generate_complaints(rows=300, seed=5))
    assert a == list(complaints.generate_complaints(rows=300, seed=5))
    assert a != list(complaints.generate_complaints(rows=300, seed=6))
    assert [r[0] for r in a] == list(range(1, 301))
    for _id, title, body, department, ctype, _created in a:
        assert title and body and "{" not in title + body
        assert complaints.COMPLAINT_TYPES[ctype][0] == department
    assert len({r[4] for r in a}) == len(complaints.COMPLAINT_TYPES)
