"""Keyset pagination on MySQL and the checkpoint form of a key (shared by every pipeline that reads MySQL).

* :func:`after_key` / :func:`after_params` — the predicate "strictly after this key" for a key of any
  length, written as ``(k1 > a) OR (k1 = a AND k2 > b) …`` so that MySQL and MariaDB use the index
  range (row-value comparisons ``(k1, k2) > (a, b)`` were not range-optimised before MySQL 8);
* :func:`encode_key` / :func:`decode_key` — a key tuple as JSON text that round-trips exactly (bytes,
  big integers, text), the form checkpoints store.

Source: "keyset pagination" (M. Winand, *SQL Performance Explained*, "paging through results").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from cutover.identifiers import quote_mysql


def encode_key(values: Sequence[Any]) -> str:
    """A key tuple as JSON that round-trips exactly (bytes as hex, text as text, numbers as numbers)."""
    out: list[list[Any]] = []
    for v in values:
        if v is None:
            out.append(["n", None])
        elif isinstance(v, (bytes, bytearray)):
            out.append(["b", bytes(v).hex()])
        elif isinstance(v, bool | int):
            out.append(["i", int(v)])
        elif isinstance(v, float):
            out.append(["f", repr(v)])
        else:
            out.append(["s", str(v)])
    return json.dumps(out, ensure_ascii=False)


def decode_key(text: str | None) -> tuple[Any, ...] | None:
    """The inverse of :func:`encode_key` (``None`` stays ``None``: start from the beginning)."""
    if text is None:
        return None
    conv: dict[str, Callable[[Any], Any]] = {"n": lambda v: None, "b": bytes.fromhex, "i": int, "f": float, "s": str}
    return tuple(conv[t](v) for t, v in json.loads(text))


def after_key(cols: Sequence[str], alias: str = "", *, escape_percent: bool = False) -> str:
    """``(k1 > %s) OR (k1 = %s AND k2 > %s) …``: rows strictly after a key (params: :func:`after_params`)."""
    q = [alias + quote_mysql(c) for c in cols]
    if escape_percent:  # for drivers' %s style: a literal % in a name is doubled, the placeholders stay
        q = [x.replace("%", "%%") for x in q]
    terms = []
    for i in range(len(q)):
        eq = [f"{q[j]} = %s" for j in range(i)]
        terms.append("(" + " AND ".join([*eq, f"{q[i]} > %s"]) + ")")
    return "(" + " OR ".join(terms) + ")"


def after_params(key: Sequence[Any]) -> list[Any]:
    """The parameters of :func:`after_key` for ``key``."""
    out: list[Any] = []
    for i in range(len(key)):
        out.extend(key[:i])
        out.append(key[i])
    return out
