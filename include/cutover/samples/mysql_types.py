"""A MySQL database for ``mysql_to_postgres``: every type it maps, with the edge values that break copies.

:func:`seed` creates (dropping a previous one) a database with:

* ``customers`` — INT UNSIGNED AUTO_INCREMENT key, a column named ``user``, every integer size signed
  and UNSIGNED at its maximum, DECIMAL(28,13), FLOAT, DOUBLE, BIT(5), ENUM labels with spaces, commas
  and parentheses, SET, JSON, DATE / DATETIME(6) / TIMESTAMP(6) with zero and partial dates, TIME
  negative and over 24 h, YEAR, BLOB with NUL bytes, CHAR(36) uuids, Korean text and 4-byte emoji, a
  latin1 column, a generated column, ``DEFAULT CURRENT_TIMESTAMP(6)`` and ``ON UPDATE
  CURRENT_TIMESTAMP(6)``;
* ``orders`` — a composite key (INT, VARCHAR) with a foreign key onto ``customers``;
* ``events_log`` — no key at all;
* a table and a column with hostile names (``hostile_table`` / ``hostile_column``, default
  ``x"; DROP TABLE y; --`` and ``select``).

``bad_rows`` adds rows PostgreSQL cannot hold (the invalid empty ENUM value; a NUL character in text),
which must land in dead letters. Rows are written in a non-strict session so the zero dates exist.
"""

from __future__ import annotations

import random
from typing import Any

from cutover.connections import MYSQL_SOURCE, mysql_connect
from cutover.identifiers import quote_mysql

ENUM_LABELS = ("active", "on hold", "closed (old)", "a,b", "ünï")
MAXIMA = {
    "t_s": (-128, 127), "t_u": (0, 255), "s_s": (-32768, 32767), "s_u": (0, 65535),
    "m_s": (-8388608, 8388607), "m_u": (0, 16777215), "i_s": (-2147483648, 2147483647), "i_u": (0, 4294967295),
    "b_s": (-9223372036854775808, 9223372036854775807), "b_u": (0, 18446744073709551615),
}


def customers_ddl(q: str) -> str:
    """The ``customers`` table."""
    ints = ",\n".join(
        f"  {c} {kind}{' UNSIGNED' if c.endswith('_u') else ''}"
        for c, kind in (("t_s", "TINYINT"), ("t_u", "TINYINT"), ("s_s", "SMALLINT"), ("s_u", "SMALLINT"),
                        ("m_s", "MEDIUMINT"), ("m_u", "MEDIUMINT"), ("i_s", "INT"), ("i_u", "INT"),
                        ("b_s", "BIGINT"), ("b_u", "BIGINT")))
    enum = ", ".join("'" + x.replace("'", "''") + "'" for x in ENUM_LABELS)
    return f"""CREATE TABLE {q} (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `user` VARCHAR(50) NOT NULL,
  name VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci,
  latin VARCHAR(40) CHARACTER SET latin1,
{ints},
  flag TINYINT(1) NOT NULL DEFAULT 0,
  balance DECIMAL(28,13),
  score DOUBLE,
  ratio FLOAT,
  bits BIT(5) DEFAULT b'00101',
  status ENUM({enum}) NOT NULL DEFAULT 'active',
  tags SET('x','y','z z'),
  doc JSON,
  born DATE,
  seen DATETIME(6),
  stamp TIMESTAMP(6) NULL DEFAULT NULL,
  dur TIME(6),
  yr YEAR,
  avatar BLOB,
  token CHAR(36),
  note TEXT,
  total_cents BIGINT AS (i_s * 100) STORED,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  KEY customers_user (`user`),
  KEY customers_name_prefix (name(10))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def seed(conn_id: str = MYSQL_SOURCE, database: str = "cutover_m2p", *, rows: int = 200, bad_rows: bool = True,
         hostile_table: str = 'x"; DROP TABLE y; --', hostile_column: str = "select", seed_value: int = 7) -> dict[str, int]:
    """Create ``database`` with the sample tables; return rows per table. ``rows``: customers (≥ 10)."""
    rnd = random.Random(seed_value)
    db = quote_mysql(database)
    out: dict[str, int] = {}
    with mysql_connect(conn_id, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS {db}")
        cur.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', time_zone = '+09:00'")
        cur.execute(customers_ddl(f"{db}.customers"))
        cur.execute(f"""CREATE TABLE {db}.orders (
            customer_id INT UNSIGNED NOT NULL, order_no VARCHAR(20) NOT NULL, amount DECIMAL(12,2) NOT NULL,
            placed DATETIME NOT NULL, PRIMARY KEY (customer_id, order_no),
            CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES {db}.customers (id) ON DELETE CASCADE)""")
        cur.execute(f"CREATE TABLE {db}.events_log (at DATETIME(3), kind VARCHAR(20), payload TEXT)")
        ht = quote_mysql(hostile_table)
        hc = quote_mysql(hostile_column)
        cur.execute(f"CREATE TABLE {db}.{ht} (id BIGINT PRIMARY KEY, {hc} VARCHAR(30), `Order` INT)".replace("%", "%%"), ())
        ins = f"""INSERT INTO {db}.customers (`user`, name, latin, t_s, t_u, s_s, s_u, m_s, m_u, i_s, i_u, b_s, b_u, flag,
                  balance, score, ratio, bits, status, tags, doc, born, seen, stamp, dur, yr, avatar, token, note)
                  VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                          %s, %s, %s, %s, %s)"""
        edge: list[tuple[Any, ...]] = [
            ("max", "최대값 🚀", "café", *(hi for _, hi in MAXIMA.values()), 1, "999999999999999.9999999999999",
             1.7976931348623157e308, 3.4028234e38, 31, "closed (old)", "x,z z", '{"k": [1, 2, {"ü": "🚀"}]}',
             "9999-12-31", "9999-12-31 23:59:59.999999", "2038-01-19 03:14:07.999999", "838:59:59.000000", 2155,
             b"\x00\x01\x00\xff", "550E8400-E29B-41D4-A716-446655440000", "tab\there\nnew line \\ backslash"),
            ("min", "최소 😀", None, *(lo for lo, _ in MAXIMA.values()), 0, "-999999999999999.9999999999999",
             -2.2250738585072014e-308, -1.17549435e-38, 0, "a,b", "", '[]',
             "0000-00-00", "0000-00-00 00:00:00", "0000-00-00 00:00:00", "-838:59:59.000000", 0,
             b"", "00000000-0000-0000-0000-000000000000", ""),
            ("partial", "부분 날짜", "naïve", *([0] * 10), 1, "0.0000000000001", 1e-9, 1e-7, 1,
             "on hold", None, 'null', "2020-05-00", "2020-00-15 10:00:00", None, "-00:00:01.500000", 1901,
             None, None, None),
        ]
        for r in edge:
            cur.execute(ins, r)
        for i in range(max(rows - len(edge), 0)):
            cur.execute(ins, (
                f"user{i}", rnd.choice(["김민준", "이서연", "Zoë", "O'Brien", "🙂 smile", "plain"]) + f" {i}",
                rnd.choice(["abc", "été", None]),
                rnd.randint(-128, 127), rnd.randint(0, 255), rnd.randint(-32768, 32767), rnd.randint(0, 65535),
                rnd.randint(0, 1000), rnd.randint(0, 1000), rnd.randint(-10**6, 10**6), rnd.randint(0, 4294967295),
                rnd.randint(-(2**63), 2**63 - 1), rnd.randint(0, 2**64 - 1), rnd.randint(0, 1),
                f"{rnd.randint(-10**9, 10**9)}.{rnd.randint(0, 10**13 - 1):013d}", rnd.uniform(-1e6, 1e6),
                rnd.uniform(0, 1), rnd.randint(0, 31), rnd.choice(ENUM_LABELS), rnd.choice(["x", "y", "x,y", None]),
                f'{{"i": {i}, "k": "값 {i}"}}', f"20{rnd.randint(10, 29)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}",
                f"2024-01-0{rnd.randint(1, 9)} 0{rnd.randint(0, 9)}:00:00.{rnd.randint(0, 999999):06d}",
                f"2024-06-0{rnd.randint(1, 9)} 12:00:00.{rnd.randint(0, 999999):06d}",
                f"{rnd.randint(-800, 800)}:{rnd.randint(0, 59):02d}:00.25", rnd.randint(1901, 2155),
                bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 20))),
                "6ba7b810-9dad-11d1-80b4-00c04fd430c8".upper() if i % 2 else "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                f"note {i}"))
        if bad_rows:  # UTF-8 bytes of 'café' written through a latin1 connection: reported as mojibake
            cur.execute(f"UPDATE {db}.customers SET latin = CONVERT(X'636166C3A9' USING latin1) WHERE id = 3")
            cur.execute(ins, ("bad-enum", "bad", None, *([0] * 10), 0, "0", 0, 0, 0, "nope", None, None,
                              None, None, None, None, None, None, None, None))
            cur.execute(ins, ("bad-nul", "nul\x00inside", None, *([0] * 10), 0, "0", 0, 0, 0, "active", None, None,
                              None, None, None, None, None, None, None, None))
        cur.execute(f"SELECT id FROM {db}.customers WHERE `user` NOT LIKE 'bad-%%' ORDER BY id")
        ids = [r[0] for r in cur.fetchall()]
        orders = [(rnd.choice(ids), f"ORD-{i:05d}", f"{rnd.randint(1, 99999)}.{rnd.randint(0, 99):02d}",
                   f"2024-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)} 10:00:00") for i in range(rows * 2)]
        cur.executemany(f"INSERT INTO {db}.orders VALUES (%s, %s, %s, %s)", orders)
        cur.executemany(f"INSERT INTO {db}.events_log VALUES (%s, %s, %s)",
                        [(f"2024-01-01 00:00:0{i % 10}.{i % 1000:03d}", rnd.choice(["login", "logout"]), f"e {i % 7}")
                         for i in range(rows)])
        cur.executemany(f"INSERT INTO {db}.{ht.replace('%', '%%')} VALUES (%s, %s, %s)",
                        [(i, f"v{i}", i * 2) for i in range(1, 21)])
        conn.commit()
        for t in ("customers", "orders", "events_log", hostile_table):
            cur.execute(f"SELECT COUNT(*) FROM {db}.{quote_mysql(t)}".replace("%", "%%"), ())
            out[t] = int(cur.fetchone()[0])
    return out
