"""Sample customer complaints for ``embedding_reindex``: a relational table of title / body / labels.

``seed_complaints(conn, rows=2000, seed=0)`` (re)creates a ``complaints`` table (id, title, body,
department, type, created_at) in MySQL/MariaDB (MySQLdb connection) or PostgreSQL (psycopg
connection) and loads it: COPY on PostgreSQL, multi-row INSERTs in batches on MySQL.

Texts are assembled from templates per complaint type, so complaints of one type resemble each
other (what a similar-case search must find) while differing in products, amounts, dates and tone;
some mention order numbers and product codes (what the keyword half of a hybrid search is good at).
The same ``seed`` and ``rows`` give the same rows.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

from cutover.identifiers import pg_ident, quote_mysql

DEFAULT_TABLE = "complaints"
BATCH_ROWS = 2000
EPOCH = dt.datetime(2024, 1, 1)
COLUMNS = ("id", "title", "body", "department", "type", "created_at")

# type → (department, title templates, body templates)
COMPLAINT_TYPES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "double_charge": (
        "Billing",
        ("Charged twice for order {order}", "Duplicate charge on my card", "Billed two times for {product}"),
        (
            "My card was charged twice ({amount} each) for order {order} on {date}. Please refund the duplicate.",
            "I see two identical payments of {amount} for the {product}. I only placed one order ({order}).",
        ),
    ),
    "refund_missing": (
        "Billing",
        ("Refund not received", "Still waiting for my refund for {order}", "Where is my money back?"),
        (
            "I returned the {product} on {date} and was promised a refund of {amount}, but nothing arrived yet.",
            "Your agent confirmed the refund for order {order} three weeks ago. My bank shows nothing.",
        ),
    ),
    "late_delivery": (
        "Shipping",
        ("Order {order} is late", "Package never arrived", "Delivery delayed again"),
        (
            "Order {order} was due on {date}. Tracking has not moved for {days} days. I need the {product} urgently.",
            "The courier marked my parcel as delivered but I never received the {product}.",
        ),
    ),
    "damaged_item": (
        "Shipping",
        ("{product} arrived broken", "Damaged parcel", "Item damaged in transit"),
        (
            "The box was crushed and the {product} inside is cracked. Order {order}, delivered {date}.",
            "When I opened the package the {product} was scratched and one part was missing.",
        ),
    ),
    "login_problem": (
        "Technical Support",
        ("Cannot log in", "Password reset email never comes", "Account locked"),
        (
            "Since {date} I cannot sign in; the reset link says it expired. Error code {code}.",
            "My account was locked after the app update and support chat keeps disconnecting (error {code}).",
        ),
    ),
    "app_crash": (
        "Technical Support",
        ("App crashes on start", "Checkout page freezes", "Error {code} when paying"),
        (
            "The app closes as soon as I open my orders. Tried reinstalling twice. Error {code}.",
            "At checkout the page freezes and my cart with the {product} is emptied.",
        ),
    ),
    "rude_agent": (
        "Customer Service",
        ("Unhelpful support agent", "Very rude phone call", "Complaint about your staff"),
        (
            "I called on {date} about order {order} and the agent hung up on me. I expect an apology.",
            "Your representative was dismissive and refused to escalate my issue with the {product}.",
        ),
    ),
    "wrong_item": (
        "Returns",
        ("Wrong item delivered", "Received {product} instead of what I ordered", "Order {order} mixed up"),
        (
            "I ordered a {product} but received something else entirely. Order {order}. How do I swap it?",
            "The size and colour of the {product} do not match my order {order}. I want an exchange.",
        ),
    ),
}
_PRODUCTS = (
    "wireless headphones",
    "coffee machine",
    "running shoes",
    "4K monitor",
    "office chair",
    "blender",
    "smartwatch",
    "winter jacket",
    "phone case",
    "desk lamp",
    "e-reader",
    "air purifier",
)
_TONES = (
    "",
    " This is unacceptable.",
    " Thank you in advance.",
    " Third time I write about this!",
    " Bitte dringend.",
)


def generate_complaints(*, rows: int = 2000, seed: int = 0) -> Iterator[tuple[Any, ...]]:
    """Yield ``(id, title, body, department, type, created_at)`` rows; the same for the same arguments."""
    rng = random.Random(f"cutover-complaints:{seed}")
    types = sorted(COMPLAINT_TYPES)
    for i in range(1, rows + 1):
        ctype = rng.choice(types)
        department, titles, bodies = COMPLAINT_TYPES[ctype]
        created = EPOCH + dt.timedelta(seconds=rng.randint(0, 365 * 86400))
        fields = {
            "order": f"ORD-{rng.randint(100000, 999999)}",
            "product": rng.choice(_PRODUCTS),
            "amount": f"€{rng.randint(5, 900)}.{rng.randint(0, 99):02d}",
            "date": (created - dt.timedelta(days=rng.randint(1, 30))).strftime("%d %B %Y"),
            "days": rng.randint(3, 21),
            "code": f"E{rng.randint(100, 999)}",
        }
        title = rng.choice(titles).format(**fields)
        body = rng.choice(bodies).format(**fields) + rng.choice(_TONES)
        yield (i, title, body, department, ctype, created)


def _is_postgres(conn: Any) -> bool:
    return type(conn).__module__.startswith("psycopg")


def seed_complaints(
    conn: Any,
    *,
    rows: int = 2000,
    seed: int = 0,
    table: str = DEFAULT_TABLE,
    schema: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> int:
    """(Re)create ``table`` (in ``schema``: a PostgreSQL schema or MySQL database) and load ``rows`` complaints.

    ``conn`` is a psycopg connection (PostgreSQL, loaded with COPY) or a MySQLdb connection (MySQL,
    multi-row INSERTs of ``batch_rows``). Commits; returns the number of rows loaded, checked
    against the table's count.
    """
    if rows < 0:
        raise ValueError(f"rows must not be negative, got {rows}")
    if _is_postgres(conn):
        return _seed_postgres(conn, rows=rows, seed=seed, table=table, schema=schema)
    return _seed_mysql(conn, rows=rows, seed=seed, table=table, database=schema, batch_rows=batch_rows)


def _seed_postgres(conn: Any, *, rows: int, seed: int, table: str, schema: str | None) -> int:
    from psycopg import sql

    name = pg_ident(schema, table) if schema else pg_ident(table)
    with conn.cursor() as cur:
        if schema:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pg_ident(schema)))
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        cur.execute(
            sql.SQL(
                """CREATE TABLE {} (
                    id          bigint PRIMARY KEY,
                    title       text NOT NULL,
                    body        text NOT NULL,
                    department  text NOT NULL,
                    type        text NOT NULL,
                    created_at  timestamp NOT NULL)"""
            ).format(name)
        )
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(name, cols)) as copy:
            for row in generate_complaints(rows=rows, seed=seed):
                copy.write_row(row)
        loaded = cur.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()[0]
    conn.commit()
    if loaded != rows:
        raise RuntimeError(f"COPY into {table!r} loaded {loaded} rows, expected {rows}")
    return int(loaded)


def _seed_mysql(conn: Any, *, rows: int, seed: int, table: str, database: str | None, batch_rows: int) -> int:
    name = f"{quote_mysql(database)}.{quote_mysql(table)}" if database else quote_mysql(table)
    cols = ", ".join(quote_mysql(c) for c in COLUMNS)
    insert = f"INSERT INTO {name} ({cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    with conn.cursor() as cur:
        if database:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_mysql(database)} CHARACTER SET utf8mb4")
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.execute(
            f"""CREATE TABLE {name} (
                id          BIGINT NOT NULL PRIMARY KEY,
                title       VARCHAR(255) NOT NULL,
                body        TEXT NOT NULL,
                department  VARCHAR(64) NOT NULL,
                type        VARCHAR(64) NOT NULL,
                created_at  DATETIME NOT NULL,
                KEY complaints_department_type (department, type)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
        )
        batch: list[tuple[Any, ...]] = []
        for row in generate_complaints(rows=rows, seed=seed):
            batch.append(row)
            if len(batch) >= batch_rows:
                cur.executemany(insert, batch)
                conn.commit()
                batch.clear()
        if batch:
            cur.executemany(insert, batch)
        conn.commit()
        cur.execute(f"SELECT COUNT(*) FROM {name}")
        loaded = int(cur.fetchone()[0])
    if loaded != rows:
        raise RuntimeError(f"loaded {loaded} rows into {table!r}, expected {rows}")
    return loaded
