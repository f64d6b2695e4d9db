"""Sample multi-tenant MySQL database for ``tenant_split``: shared tables keyed by ``tenant_id``.

The schema is the shape a SaaS outgrows: a ``tenants`` table and shared tables that each carry a
``tenant_id`` column, with foreign keys, secondary indexes, a unique key per tenant and triggers (which
a bulk load sets aside and restores). Two tables exist for the consolidation step of the split:
``customer_notes`` (to merge into ``customers``) and ``legacy_sessions`` (to drop).

Tenants have skewed sizes (Zipf-like: the first tenant is the whale, the tail is small) and names
that are not safe identifiers (quotes, spaces, accents), as they are in the field. Data is fully
deterministic for a given ``seed`` and size: no clock, no unordered iteration.

``seed_tenants(conn, tenants=8, rows=10_000, seed=0)`` (re)creates the tables in ``cutover_source``
and loads them with multi-row INSERTs in batches; ``generate_rows`` yields the same rows without a
database (what the determinism tests compare).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from cutover.identifiers import quote_mysql

DEFAULT_DATABASE = "cutover_source"
BATCH_ROWS = 2000
EPOCH = dt.datetime(2024, 1, 1)

# Load order (parents first); dropped in reverse.
TABLES = ("tenants", "customers", "orders", "order_items", "invoices", "customer_notes", "legacy_sessions")

DDL = {
    "tenants": """
CREATE TABLE tenants (
    tenant_id   INT NOT NULL PRIMARY KEY,
    slug        VARCHAR(100) NOT NULL,
    name        VARCHAR(200) NOT NULL,
    plan        ENUM('free','team','enterprise') NOT NULL,
    created_at  DATETIME NOT NULL,
    UNIQUE KEY tenants_slug (slug)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    "customers": """
CREATE TABLE customers (
    id          BIGINT NOT NULL PRIMARY KEY,
    tenant_id   INT NOT NULL,
    email       VARCHAR(190) NOT NULL,
    full_name   VARCHAR(200) NOT NULL,
    country     CHAR(2),
    balance     DECIMAL(12,2) NOT NULL DEFAULT 0,
    created_at  DATETIME NOT NULL,
    updated_at  DATETIME NULL,
    UNIQUE KEY customers_tenant_email (tenant_id, email),
    KEY customers_tenant_created (tenant_id, created_at),
    CONSTRAINT customers_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    "orders": """
CREATE TABLE orders (
    id          BIGINT NOT NULL PRIMARY KEY,
    tenant_id   INT NOT NULL,
    customer_id BIGINT NOT NULL,
    status      VARCHAR(20) NOT NULL,
    total       DECIMAL(12,2) NOT NULL,
    currency    CHAR(3) NOT NULL,
    note        TEXT NULL,
    created_at  DATETIME NOT NULL,
    updated_at  DATETIME NULL,
    KEY orders_tenant_status (tenant_id, status),
    KEY orders_customer (customer_id),
    CONSTRAINT orders_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id),
    CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    "order_items": """
CREATE TABLE order_items (
    id          BIGINT NOT NULL PRIMARY KEY,
    tenant_id   INT NOT NULL,
    order_id    BIGINT NOT NULL,
    sku         VARCHAR(40) NOT NULL,
    quantity    INT NOT NULL,
    unit_price  DECIMAL(10,2) NOT NULL,
    KEY order_items_tenant (tenant_id),
    KEY order_items_order (order_id),
    CONSTRAINT order_items_order_fk FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    "invoices": """
CREATE TABLE invoices (
    id          BIGINT NOT NULL PRIMARY KEY,
    tenant_id   INT NOT NULL,
    order_id    BIGINT NOT NULL,
    number      VARCHAR(40) NOT NULL,
    amount      DECIMAL(12,2) NOT NULL,
    paid        TINYINT(1) NOT NULL DEFAULT 0,
    issued_at   DATETIME NOT NULL,
    UNIQUE KEY invoices_tenant_number (tenant_id, number),
    KEY invoices_order (order_id),
    CONSTRAINT invoices_order_fk FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    "customer_notes": """
CREATE TABLE customer_notes (
    id          BIGINT NOT NULL PRIMARY KEY,
    tenant_id   INT NOT NULL,
    customer_id BIGINT NOT NULL,
    body        TEXT NOT NULL,
    created_at  DATETIME NOT NULL,
    KEY customer_notes_tenant (tenant_id),
    CONSTRAINT customer_notes_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    "legacy_sessions": """
CREATE TABLE legacy_sessions (
    id          BIGINT NOT NULL PRIMARY KEY,
    tenant_id   INT NOT NULL,
    token       CHAR(32) NOT NULL,
    last_seen   DATETIME NOT NULL,
    KEY legacy_sessions_tenant (tenant_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
}

# Triggers: deterministic (no clock), so that a copy made with them set aside and restored is equal.
TRIGGERS = {
    "customers_email_lower": (
        "CREATE TRIGGER customers_email_lower BEFORE INSERT ON customers FOR EACH ROW SET NEW.email = LOWER(NEW.email)"
    ),
    "orders_total_nonnegative": (
        "CREATE TRIGGER orders_total_nonnegative BEFORE UPDATE ON orders FOR EACH ROW "
        "SET NEW.total = GREATEST(NEW.total, 0)"
    ),
}

COLUMNS = {
    "tenants": ("tenant_id", "slug", "name", "plan", "created_at"),
    "customers": ("id", "tenant_id", "email", "full_name", "country", "balance", "created_at", "updated_at"),
    "orders": (
        "id",
        "tenant_id",
        "customer_id",
        "status",
        "total",
        "currency",
        "note",
        "created_at",
        "updated_at",
    ),
    "order_items": ("id", "tenant_id", "order_id", "sku", "quantity", "unit_price"),
    "invoices": ("id", "tenant_id", "order_id", "number", "amount", "paid", "issued_at"),
    "customer_notes": ("id", "tenant_id", "customer_id", "body", "created_at"),
    "legacy_sessions": ("id", "tenant_id", "token", "last_seen"),
}

# Names as customers type them: the split must map them to safe database names, never trust them.
_TENANT_NAMES = (
    "Acme Corp",
    "Globex",
    "O'Brien & Sons",
    "Initech; DROP TABLE x",
    "Müller GmbH",
    "Umbrella",
    "Stark `Industries`",
    "Wayne Enterprises",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Hooli",
)
_FIRST = ("Ana", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Ines", "José", "Kai", "Lena")
_LAST = ("Smith", "Nguyen", "Okafor", "Schäfer", "Rossi", "Kowalski", "Tanaka", "O'Neil", "García", "Novak")
_COUNTRIES = ("US", "DE", "FR", "GB", "JP", "BR", "IN", "NG", None)
_STATUSES = ("new", "paid", "shipped", "delivered", "cancelled", "refunded")
_CURRENCIES = ("EUR", "USD", "GBP")
_PLANS = ("free", "team", "enterprise")


def tenant_sizes(tenants: int, rows: int) -> list[int]:
    """Orders per tenant: Zipf-like skew (weight 1/rank), every tenant has at least one, summing to ``rows``."""
    if tenants < 1:
        raise ValueError(f"tenants must be at least 1, got {tenants}")
    if rows < tenants:
        raise ValueError(f"rows ({rows}) must be at least the number of tenants ({tenants})")
    weights = [1.0 / (rank + 1) for rank in range(tenants)]
    total_w = sum(weights)
    sizes = [max(1, int(rows * w / total_w)) for w in weights]
    # hand out (or take back) the rounding remainder, biggest tenant first, never below 1
    diff = rows - sum(sizes)
    i = 0
    while diff != 0:
        step = 1 if diff > 0 else -1
        if sizes[i % tenants] + step >= 1:
            sizes[i % tenants] += step
            diff -= step
        i += 1
    return sizes


def tenant_name(index: int) -> str:
    """The display name of tenant ``index`` (0-based); repeats get a number."""
    base = _TENANT_NAMES[index % len(_TENANT_NAMES)]
    return base if index < len(_TENANT_NAMES) else f"{base} {index // len(_TENANT_NAMES) + 1}"


def _money(rng: random.Random, low: float, high: float) -> Decimal:
    return Decimal(rng.randint(int(low * 100), int(high * 100))) / 100


def generate_rows(
    *, tenants: int = 8, rows: int = 10_000, seed: int = 0
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Yield ``(table, row)`` for the whole sample, in load order per tenant; the same for the same arguments.

    ``rows`` is the total number of orders; the other tables follow from it (customers ≈ rows / 4,
    1–4 items per order, an invoice for ~60 % of orders, a note for ~25 % of customers, sessions ≈ rows / 10).
    """
    rng = random.Random(f"cutover-tenants:{seed}")
    ids = dict.fromkeys(TABLES, 0)

    def next_id(table: str) -> int:
        ids[table] += 1
        return ids[table]

    for t, n_orders in enumerate(tenant_sizes(tenants, rows)):
        tenant_id = t + 1
        name = tenant_name(t)
        created = EPOCH + dt.timedelta(days=t)
        yield (
            "tenants",
            (tenant_id, f"tenant-{tenant_id}", name, _PLANS[min(2, 2 - t * 3 // tenants)], created),
        )
        customer_ids: list[int] = []
        for c in range(max(1, n_orders // 4)):
            cid = next_id("customers")
            customer_ids.append(cid)
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            c_created = created + dt.timedelta(minutes=rng.randint(0, 500_000))
            yield (
                "customers",
                (
                    cid,
                    tenant_id,
                    f"{first}.{last}.{c}@Tenant{tenant_id}.example".replace("'", ""),
                    f"{first} {last}",
                    rng.choice(_COUNTRIES),
                    _money(rng, -50, 5000),
                    c_created,
                    c_created + dt.timedelta(days=rng.randint(1, 90)) if rng.random() < 0.3 else None,
                ),
            )
            if rng.random() < 0.25:
                yield (
                    "customer_notes",
                    (
                        next_id("customer_notes"),
                        tenant_id,
                        cid,
                        f"Called about order — “{rng.choice(_STATUSES)}”",
                        c_created + dt.timedelta(hours=rng.randint(1, 2000)),
                    ),
                )
        for _ in range(n_orders):
            oid = next_id("orders")
            o_created = created + dt.timedelta(minutes=rng.randint(0, 600_000))
            status = rng.choice(_STATUSES)
            items = [(rng.randint(1, 5), _money(rng, 1, 400)) for _ in range(rng.randint(1, 4))]
            total = sum((q * p for q, p in items), Decimal("0.00"))
            yield (
                "orders",
                (
                    oid,
                    tenant_id,
                    rng.choice(customer_ids),
                    status,
                    total,
                    rng.choice(_CURRENCIES),
                    "gift wrap, please" if rng.random() < 0.05 else None,
                    o_created,
                    o_created + dt.timedelta(hours=rng.randint(1, 500)) if status != "new" else None,
                ),
            )
            for q, p in items:
                yield (
                    "order_items",
                    (next_id("order_items"), tenant_id, oid, f"SKU-{rng.randint(1, 5000):05d}", q, p),
                )
            if status != "new" and rng.random() < 0.7:
                iid = next_id("invoices")
                yield (
                    "invoices",
                    (
                        iid,
                        tenant_id,
                        oid,
                        f"INV-{tenant_id}-{iid:08d}",
                        total,
                        int(status != "paid"),
                        o_created + dt.timedelta(hours=1),
                    ),
                )
        for _ in range(max(0, n_orders // 10)):
            yield (
                "legacy_sessions",
                (
                    next_id("legacy_sessions"),
                    tenant_id,
                    f"{rng.getrandbits(128):032x}",
                    created + dt.timedelta(minutes=rng.randint(0, 600_000)),
                ),
            )


def expected_counts(*, tenants: int = 8, rows: int = 10_000, seed: int = 0) -> dict[str, int]:
    """Rows per table that :func:`seed_tenants` loads for these arguments (computed without a database)."""
    counts = dict.fromkeys(TABLES, 0)
    for table, _ in generate_rows(tenants=tenants, rows=rows, seed=seed):
        counts[table] += 1
    return counts


def _insert_sql(database: str, table: str) -> str:
    cols = ", ".join(quote_mysql(c) for c in COLUMNS[table])
    marks = ", ".join(["%s"] * len(COLUMNS[table]))
    return f"INSERT INTO {quote_mysql(database)}.{quote_mysql(table)} ({cols}) VALUES ({marks})"


def create_schema(conn: Any, database: str = DEFAULT_DATABASE) -> None:
    """(Re)create the sample tables and triggers in ``database`` (existing sample tables are dropped)."""
    db = quote_mysql(database)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute(f"USE {db}")
        cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        try:
            for table in reversed(TABLES):
                cur.execute(f"DROP TABLE IF EXISTS {quote_mysql(table)}")
            for table in TABLES:
                cur.execute(DDL[table])
        finally:
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")
        for trigger in TRIGGERS.values():
            cur.execute(trigger)


def seed_tenants(
    conn: Any,
    *,
    database: str = DEFAULT_DATABASE,
    tenants: int = 8,
    rows: int = 10_000,
    seed: int = 0,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, int]:
    """Create the multi-tenant sample in ``database`` on a MySQLdb connection and load it; returns rows per table.

    Rows go in as multi-row INSERTs of ``batch_rows`` (MySQLdb's ``executemany`` folds them into one
    statement), committed per batch, with foreign-key checks off for the load (the data is consistent
    by construction). Running it again replaces the sample with an identical one.
    """
    create_schema(conn, database)
    counts = dict.fromkeys(TABLES, 0)
    buffers: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
    sqls = {t: _insert_sql(database, t) for t in TABLES}
    with conn.cursor() as cur:
        cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        try:

            def flush(table: str) -> None:
                if buffers[table]:
                    cur.executemany(sqls[table], buffers[table])
                    counts[table] += len(buffers[table])
                    buffers[table].clear()

            for table, row in generate_rows(tenants=tenants, rows=rows, seed=seed):
                buffers[table].append(row)
                if len(buffers[table]) >= batch_rows:
                    flush(table)
                    conn.commit()
            for table in TABLES:
                flush(table)
            conn.commit()
        finally:
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")
    return counts
