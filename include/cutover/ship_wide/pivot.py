"""The pivot: one chunk of narrow rows (CSV from ``COPY … TO STDOUT``) → wide rows (CSV for ``COPY … FROM``).

Vectorised with pyarrow and numpy, so its cost is per chunk, not per Python object: the narrow chunk
is parsed by pyarrow's CSV reader, validated with array masks, de-duplicated (the valid row with the
highest ingest sequence wins), scattered into a (column × time) index matrix, and the wide columns are
gathered with ``take`` and written by pyarrow's CSV writer, which quotes every string and leaves NULL
unquoted and empty, as PostgreSQL's CSV reads them. Values are kept in PostgreSQL's text form end to
end, so nothing is re-formatted on the way (``1.1`` stays ``1.1``, booleans stay ``t``/``f``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from cutover.control import DeadLetter
from cutover.ship_wide.config import (
    FORMAT_COLUMN,
    TIME_COLUMN,
    VALUE_COLUMNS,
    accepted_format,
    invalid_reason,
)

#: the narrow columns as the chunk query selects them (the sequence column is aliased ``seq``)
CHUNK_COLUMNS = ("seq", TIME_COLUMN, "data_channel_id", "value_format", *VALUE_COLUMNS)
FORMATS = tuple(FORMAT_COLUMN)


@dataclass
class PivotResult:
    """One pivoted chunk, ready for COPY, plus what could not load and why."""

    csv: bytes
    columns: list[str]  # wide column names in CSV order (created_time first)
    wide_rows: int
    narrow_rows: int
    loaded: int  # narrow values that landed in a cell
    superseded: int  # duplicates beaten by a later row
    dead: list[DeadLetter] = field(default_factory=list)
    max_seq: int | None = None
    last_time: str | None = None


def read_chunk(data: bytes | memoryview, columns: tuple[str, ...] = CHUNK_COLUMNS) -> Any:
    """Parse a narrow chunk written by ``COPY (…) TO STDOUT (FORMAT csv)`` (NULL unquoted, '' quoted) of
    ``columns`` (``seq`` int64, channel and format dictionary-encoded, the rest text)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {c: pa.string() for c in columns}
    types["seq"] = pa.int64()
    for c in ("data_channel_id", "value_format"):
        types[c] = pa.dictionary(pa.int32(), pa.string())
    if not len(data):
        return pa.table({c: pa.array([], t) for c, t in types.items()})
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=list(columns), block_size=1 << 24),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False, null_values=[""]
        ),
    )


def _masks(chunk: Any) -> tuple[Any, Any, Any]:
    """(format code or -1, valid mask, value-present matrix) per row."""
    import numpy as np
    import pyarrow.compute as pc

    fmt = chunk["value_format"].combine_chunks()
    fmt_code = np.array([FORMATS.index(f) if f in FORMATS else -1 for f in fmt.dictionary.to_pylist()] + [-1])
    code = fmt_code[fmt.indices.fill_null(len(fmt.dictionary)).to_numpy(zero_copy_only=False)]
    present = np.stack([pc.is_valid(chunk[c]).to_numpy(zero_copy_only=False) for c in VALUE_COLUMNS], axis=1)
    ch = chunk["data_channel_id"].combine_chunks()
    ch_ok_dict = np.array([bool(x) for x in ch.dictionary.to_pylist()] + [False])
    ch_ok = ch_ok_dict[ch.indices.fill_null(len(ch.dictionary)).to_numpy(zero_copy_only=False)]
    # FORMATS and VALUE_COLUMNS are in the same order: a valid row has exactly the column of its format set
    want = np.zeros_like(present)
    rows = np.flatnonzero(code >= 0)
    want[rows, code[rows]] = True
    timed = pc.is_valid(chunk[TIME_COLUMN]).to_numpy(zero_copy_only=False)
    valid = timed & ch_ok & (code >= 0) & (present == want).all(axis=1)
    return code, valid, present


def channels_of(chunk: Any) -> dict[str, set[str]]:
    """Channel → formats seen in the chunk's valid rows (to add new columns before pivoting)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    code, valid, _ = _masks(chunk)
    if not valid.any():
        return {}
    pairs = pa.table({
        "ch": pc.filter(chunk["data_channel_id"].combine_chunks().dictionary_decode(), pa.array(valid)),
        "f": pa.array(code[valid].astype(np.int8)),
    }).group_by(["ch", "f"]).aggregate([])
    out: dict[str, set[str]] = {}
    for ch, f in zip(pairs["ch"].to_pylist(), pairs["f"].to_pylist(), strict=True):
        out.setdefault(ch, set()).add(FORMATS[f])
    return out


def _row_payload(chunk: Any, i: int) -> dict[str, Any]:
    return {c: chunk[c][i].as_py() for c in CHUNK_COLUMNS}


def new_channels(chunk: Any, columns: dict[str, str]) -> dict[str, set[str]]:
    """Channel → formats of the chunk's valid rows whose channel has no column yet (cheap when none)."""
    import numpy as np

    ch = chunk["data_channel_id"].combine_chunks()
    names = ch.dictionary.to_pylist()
    unknown = [i for i, n in enumerate(names) if n and n not in columns]
    if not unknown or not chunk.num_rows:
        return {}
    code, valid, _ = _masks(chunk)
    idx = ch.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    sel = valid & np.isin(idx, unknown)
    out: dict[str, set[str]] = {}
    for key in np.unique(idx[sel] * 8 + code[sel]):
        out.setdefault(names[int(key) // 8], set()).add(FORMATS[int(key) % 8])
    return out


def pivot(
    chunk: Any, columns: dict[str, str], types: dict[str, str], *, ship_id: str, source: str, seq_name: str = "id",
) -> PivotResult:
    """Pivot a parsed narrow chunk of one ship onto the wide columns.

    ``columns`` maps channel → column, ``types`` column → PostgreSQL type; every valid channel of the
    chunk must be mapped (add its column first, see :func:`channels_of`). Rows that are invalid or whose
    format the channel's typed column cannot take become dead letters with the reason.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    n = chunk.num_rows
    seq = chunk["seq"].to_numpy(zero_copy_only=False) if n else np.zeros(0, dtype=np.int64)
    code, valid, present = _masks(chunk)
    ch_enc = chunk["data_channel_id"].combine_chunks()
    ch_dict = ch_enc.dictionary.to_pylist()
    ch_code = ch_enc.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64) if n else np.zeros(0, np.int64)
    col_names = list(types)
    col_pos = {c: i for i, c in enumerate(col_names)}
    fmt_index = {f: i for i, f in enumerate(FORMATS)}
    pos_of_dict = np.array([col_pos.get(columns.get(ch, ""), -1) if ch else -1 for ch in ch_dict] or [-1], dtype=np.int64)
    accept = np.array(
        [(-1 if (a := accepted_format(types.get(columns.get(ch, ""), "text"))) is None else fmt_index[a]) if ch else -1
         for ch in ch_dict] or [-1],
        dtype=np.int64,
    )
    pos = pos_of_dict[ch_code]
    unmapped = valid & (pos < 0)
    if unmapped.any():
        missing = sorted({ch_dict[c] for c in np.unique(ch_code[unmapped])})
        raise KeyError(f"ship {ship_id!r}: channels without a column: {missing[:5]} (add them first)")
    acc = accept[ch_code]
    compatible = (acc < 0) | (acc == code)
    good = valid & compatible
    dead: list[DeadLetter] = []
    for i in np.flatnonzero(~good):
        row = _row_payload(chunk, int(i))
        reason = invalid_reason(row["data_channel_id"], row["value_format"],
                                {c: bool(present[i, k]) for k, c in enumerate(VALUE_COLUMNS)},
                                time_missing=row[TIME_COLUMN] is None)
        if reason is None:
            col = columns[row["data_channel_id"]]
            reason = f"value_format {row['value_format']} does not fit column {col!r} of type {types[col]}"
        dead.append(DeadLetter(
            source=source,
            record_key=f"ship={ship_id} channel={row['data_channel_id']!r} created_time={row[TIME_COLUMN]} {seq_name}={row['seq']}",
            reason=reason,
            payload={**{k: v for k, v in row.items() if k != "seq"}, seq_name: row["seq"], "ship_id": ship_id},
        ))
    idx = np.flatnonzero(good)
    g = pa.array(idx)
    times = pc.dictionary_encode(pc.take(chunk[TIME_COLUMN], g)).combine_chunks()
    t_code = times.indices.to_numpy(zero_copy_only=False).astype(np.int64) if len(idx) else np.zeros(0, np.int64)
    n_t, n_c = len(times.dictionary), len(col_names)
    g_pos, g_seq = pos[idx], seq[idx]
    key = g_pos * max(n_t, 1) + t_code
    best = np.full(max(n_t * n_c, 1), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(best, key, g_seq)
    win = g_seq == best[key]
    cell = np.full((n_c, n_t), -1, dtype=np.int64)
    cell[g_pos[win], t_code[win]] = np.arange(len(idx), dtype=np.int64)[win]
    parts = [pc.take(chunk[c], g) for c in VALUE_COLUMNS]
    # COPY writes booleans as t/f, a text cast as true/false: text columns hold the cast's form
    parts[-1] = pc.if_else(pc.equal(parts[-1], "t"), "true", "false")
    values = pc.coalesce(*parts) if len(idx) else pa.array([], pa.string())
    used = np.flatnonzero((cell >= 0).any(axis=1))
    out_cols = {TIME_COLUMN: times.dictionary}
    for j in used:
        out_cols[col_names[j]] = pc.take(values, pa.array(cell[j], mask=cell[j] < 0))
    wide = pa.table(out_cols)
    buf = io.BytesIO()
    if n_t:
        pacsv.write_csv(wide, buf, pacsv.WriteOptions(include_header=False, batch_size=1 << 16))
    last_time = pc.max(chunk[TIME_COLUMN]).as_py() if n else None
    return PivotResult(
        csv=buf.getvalue(), columns=list(out_cols), wide_rows=n_t, narrow_rows=n, loaded=int(win.sum()),
        superseded=int(len(idx) - win.sum()), dead=dead, max_seq=int(seq.max()) if n else None, last_time=last_time,
    )
