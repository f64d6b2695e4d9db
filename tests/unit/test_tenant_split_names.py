"""Tenant ids → database names: safe, ≤ 64 characters, stable, never colliding (pure, no database)."""

from __future__ import annotations

import re

from cutover.samples.hostile import HOSTILE_NAMES
from cutover.tenant_split.config import TenantSplitConfig
from cutover.tenant_split.plan import tenant_database

CFG = TenantSplitConfig()


def test_every_hostile_id_maps_to_a_safe_distinct_name() -> None:
    ids = [*HOSTILE_NAMES, "x" * 200, "x" * 199 + "y", "O'Brien & Sons", "Stark `Industries`", "", " ", "1", "01"]
    names = [tenant_database(CFG, t) for t in ids]
    assert all(re.fullmatch(r"[a-z0-9_]{1,64}", n) for n in names), names
    assert len({n.lower() for n in names}) == len(ids)  # case twins and long twins stay apart
    assert tenant_database(CFG, "acme") == "tenant_acme"  # a safe id keeps its name
    assert tenant_database(CFG, "select") == "tenant_select"  # the prefix keeps reserved words out
    assert tenant_database(CFG, "Mixed Case") != tenant_database(CFG, "mixed case")


def test_the_mapping_is_stable() -> None:
    assert [tenant_database(CFG, t) for t in HOSTILE_NAMES] == [tenant_database(CFG, t) for t in HOSTILE_NAMES]
    assert tenant_database(TenantSplitConfig(database_prefix="t_"), "100%").startswith("t_100_")
