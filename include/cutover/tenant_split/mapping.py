"""The table mapping of a tenant split: a YAML file in the repo saying what becomes of each source table.

::

    tenant_column: tenant_id            # the default tenant column
    tables:
      customers: {}                     # tenant-scoped, copied under its own name
      orders: {tenant_column: shop_id}  # its tenant column has another name
      legacy_sessions: {action: drop}   # not copied
      customer_notes: {rename: notes}
      invoices_2019: {merge_into: invoices}   # rows go into another table of the same shape
      plans: {action: shared}           # reference data without a tenant column, copied to every tenant
      audit_log: {orphans: report}      # this table's rows outside every tenant: reported, not copied
      legacy_cache: {non_transactional: copy}  # a MyISAM table copied anyway (resume not exact)
    unlisted: copy                      # tables not listed: copy (default) or error
    orphans: error                      # rows outside every tenant: error (default) | report | {copy_to: <tenant>}

**Orphans** are a tenant-scoped table's rows that no tenant of the directory claims: the tenant
column is NULL, or holds an id the tenant directory does not list. ``orphans`` (top level, and per
table) says what becomes of them: ``error`` (the default) stops the plan, naming the table, the
counts and sample keys; ``report`` copies them nowhere and reports them (run evidence, schema diff
report); ``{copy_to: <tenant>}`` copies them into that tenant's database (they keep their tenant
column's value). **Non-transactional tables** (MyISAM, Aria, MEMORY, …) are refused at plan: a chunk
and its checkpoint cannot commit together there, so a resumed copy could duplicate rows;
``non_transactional: copy`` on a table accepts that risk for it.

:func:`load_mapping` reads it with PyYAML's node API so every error names the file and line
(``mapping.yaml line 7: …``): unknown keys or actions, a rename and a drop at once, a duplicate table,
two tables renamed to one name, a merge into a dropped, unknown or chained table, a name MySQL cannot
hold. Table names go through :func:`cutover.identifiers.validate_identifier` (MySQL rules). The plan
then applies the mapping to what ``information_schema`` holds (:meth:`Mapping.resolve`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cutover.identifiers import IdentifierError, validate_identifier

ACTIONS = ("copy", "drop", "shared")
TABLE_KEYS = ("action", "rename", "merge_into", "tenant_column", "orphans", "non_transactional")
TOP_KEYS = ("tenant_column", "tables", "unlisted", "orphans")
#: what becomes of a table's rows outside every tenant (``copy_to`` takes a tenant id)
ORPHAN_MODES = ("error", "report", "copy_to")
#: ``non_transactional``: ``refuse`` (the default: the plan stops) or ``copy`` (the table's opt-in)
NON_TRANSACTIONAL = ("refuse", "copy")


class MappingError(ValueError):
    """The mapping file is wrong; the message names the file and line."""


@dataclass(frozen=True)
class OrphanPolicy:
    """What becomes of rows outside every tenant: ``mode`` is one of :data:`ORPHAN_MODES`; ``tenant``
    the tenant id they go to (``copy_to`` only); ``line`` the mapping line that set it (0: default)."""

    mode: str = "error"
    tenant: str | None = None
    line: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ORPHAN_MODES:
            raise ValueError(f"orphans must be one of {', '.join(ORPHAN_MODES)}, got {self.mode!r}")
        if (self.mode == "copy_to") != bool(self.tenant):
            raise ValueError("orphans: copy_to needs a non-empty tenant id (and only copy_to takes one)")

    def __str__(self) -> str:
        return f"copy_to: {self.tenant}" if self.mode == "copy_to" else self.mode


@dataclass(frozen=True)
class TableRule:
    """What becomes of one source table: ``action`` copy / drop / shared, under ``target`` (its new name,
    or, when ``merged``, the table it merges into), reading the tenant from ``tenant_column``."""

    source: str
    action: str
    target: str
    tenant_column: str | None
    line: int
    merged: bool = False  # its rows go into ``target``, a table kept under its own rule
    #: this table's orphan policy (None: the mapping's top-level ``orphans``)
    orphans: OrphanPolicy | None = None
    #: ``non_transactional: copy`` was given: a MyISAM (or other non-transactional) table is copied anyway
    allow_non_transactional: bool = False


@dataclass(frozen=True)
class Mapping:
    """A validated mapping: the rules of the listed tables and what to do with the others."""

    path: str
    tenant_column: str
    rules: dict[str, TableRule] = field(default_factory=dict)
    unlisted: str = "copy"
    orphans: OrphanPolicy = field(default_factory=OrphanPolicy)

    def orphan_policy(self, rule: TableRule) -> OrphanPolicy:
        """The orphan policy of one table: its own, else the mapping's."""
        return rule.orphans or self.orphans

    def resolve(self, tables: Iterable[str]) -> dict[str, TableRule]:
        """The rule of every table the source has (listed or not); raises :class:`MappingError` for a
        listed table the source does not have, a merge target that does not exist, or an unlisted
        table when ``unlisted: error``."""
        have = set(tables)
        missing = sorted(set(self.rules) - have)
        if missing:
            rule = self.rules[missing[0]]
            raise MappingError(f"{self.path} line {rule.line}: table {missing[0]!r} is not in the source "
                               f"(it has {len(have)} tables)" + (f"; also missing: {missing[1:10]}" if missing[1:] else ""))
        out: dict[str, TableRule] = {}
        for t in sorted(have):
            listed = self.rules.get(t)
            if listed is None and self.unlisted == "error":
                raise MappingError(f"{self.path}: table {t!r} is in the source but not in the mapping "
                                   "(unlisted: error)")
            out[t] = listed or TableRule(t, "copy", t, self.tenant_column, 0)
        for rule in out.values():
            if rule.merged and rule.target not in have and rule.target not in {r.target for r in out.values()
                                                                                 if not r.merged}:
                raise MappingError(f"{self.path} line {rule.line}: {rule.source!r} merges into {rule.target!r}, "
                                   "which is neither a source table nor a table of the target")
        for name, rule in list(out.items()):  # a merge into a source table goes where that table goes (its rename)
            into = out.get(rule.target)
            if rule.merged and into is not None and not into.merged and into.target != rule.target:
                out[name] = replace(rule, target=into.target)
        return out

    def targets(self, tables: Iterable[str]) -> dict[str, list[str]]:
        """Target table → the source tables that fill it (drops left out), for the diff report."""
        out: dict[str, list[str]] = {}
        for rule in self.resolve(tables).values():
            if rule.action != "drop":
                out.setdefault(rule.target, []).append(rule.source)
        return out


def _line(node: Any) -> int:
    return int(node.start_mark.line) + 1


def _scalar(path: str, node: Any, what: str) -> str:
    import yaml

    if not isinstance(node, yaml.ScalarNode) or node.value == "":
        raise MappingError(f"{path} line {_line(node)}: {what} must be a non-empty text")
    return str(node.value)


def _pairs(path: str, node: Any, what: str) -> list[tuple[Any, Any]]:
    """The (key node, value node) pairs of a mapping node; duplicate keys are an error (YAML keeps the last)."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise MappingError(f"{path} line {_line(node)}: {what} must be a mapping (key: value)")
    seen: dict[str, int] = {}
    for k, _ in node.value:
        key = _scalar(path, k, f"a key of {what}")
        if key in seen:
            raise MappingError(f"{path} line {_line(k)}: {key!r} appears twice in {what} (first on line {seen[key]})")
        seen[key] = _line(k)
    return list(node.value)


def _ident(path: str, node: Any, what: str) -> str:
    name = _scalar(path, node, what)
    try:
        return validate_identifier(name, dialect="mysql")
    except IdentifierError as exc:
        raise MappingError(f"{path} line {_line(node)}: {what} {name!r}: {exc}") from exc


def _orphans(path: str, node: Any, what: str) -> OrphanPolicy:
    """``error`` | ``report`` | ``{copy_to: <tenant id>}`` (the tenant id is data: any non-empty text)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        pairs = _pairs(path, node, what)
        keys = [_scalar(path, k, f"a key of {what}") for k, _ in pairs]
        if keys != ["copy_to"]:
            raise MappingError(f"{path} line {_line(node)}: {what} must be error, report or {{copy_to: <tenant>}}, "
                               f"got the key(s) {keys}")
        tenant = _scalar(path, pairs[0][1], f"copy_to of {what}")
        if not tenant.strip():
            raise MappingError(f"{path} line {_line(pairs[0][1])}: copy_to of {what}: the tenant id is blank")
        return OrphanPolicy("copy_to", tenant, _line(node))
    value = _scalar(path, node, what)
    if value not in ("error", "report"):
        hint = " (write it as {copy_to: <tenant>})" if value.startswith("copy_to") else ""
        raise MappingError(f"{path} line {_line(node)}: {what} must be error, report or {{copy_to: <tenant>}}, "
                           f"got {value!r}{hint}")
    return OrphanPolicy(value, None, _line(node))


def parse_mapping(text: str, *, path: str = "<mapping>") -> Mapping:
    """Parse and validate mapping YAML (see the module docstring); raises :class:`MappingError`."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise MappingError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if root is None:
        raise MappingError(f"{path}: the file is empty (it needs at least `tables:`)")
    top = {_scalar(path, k, "a top-level key"): (k, v) for k, v in _pairs(path, root, "the file")}
    for key, (k, _) in top.items():
        if key not in TOP_KEYS:
            raise MappingError(f"{path} line {_line(k)}: unknown key {key!r} (expected one of {', '.join(TOP_KEYS)})")
    if "tables" not in top:
        raise MappingError(f"{path} line {_line(root)}: `tables:` is missing")
    default_col = _ident(path, top["tenant_column"][1], "tenant_column") if "tenant_column" in top else "tenant_id"
    unlisted = _scalar(path, top["unlisted"][1], "unlisted") if "unlisted" in top else "copy"
    if unlisted not in ("copy", "error"):
        raise MappingError(f"{path} line {_line(top['unlisted'][1])}: unlisted must be copy or error, got {unlisted!r}")
    orphans = _orphans(path, top["orphans"][1], "orphans") if "orphans" in top else OrphanPolicy()
    rules: dict[str, TableRule] = {}
    tables_node = top["tables"][1]
    for k, v in _pairs(path, tables_node, "tables"):
        name = _ident(path, k, "table")
        line = _line(k)
        opts: dict[str, tuple[Any, str]] = {}
        if not (isinstance(v, yaml.ScalarNode) and v.value in ("", "null", "~")):  # `customers:` alone is fine
            for ok, ov in _pairs(path, v, f"table {name!r}"):
                key = _scalar(path, ok, "a key")
                if key not in TABLE_KEYS:
                    raise MappingError(f"{path} line {_line(ok)}: table {name!r}: unknown key {key!r} "
                                       f"(expected one of {', '.join(TABLE_KEYS)})")
                opts[key] = (ov, "" if key == "orphans" else _scalar(path, ov, f"{key} of table {name!r}"))
        action = opts.get("action", (None, "copy"))[1]
        if action not in ACTIONS:
            raise MappingError(f"{path} line {_line(opts['action'][0])}: table {name!r}: unknown action {action!r} "
                               f"(expected one of {', '.join(ACTIONS)})")
        if "rename" in opts and "merge_into" in opts:
            raise MappingError(f"{path} line {line}: table {name!r}: rename and merge_into at once (choose one)")
        if action == "drop" and ({"rename", "merge_into", "tenant_column"} & set(opts)):
            raise MappingError(f"{path} line {line}: table {name!r} is dropped, so "
                               f"{', '.join(sorted({'rename', 'merge_into', 'tenant_column'} & set(opts)))} means nothing")
        if action == "shared" and "tenant_column" in opts:
            raise MappingError(f"{path} line {line}: table {name!r} is shared reference data: it has no tenant column")
        if action != "copy" and "orphans" in opts:
            raise MappingError(f"{path} line {_line(opts['orphans'][0])}: table {name!r} is {action}: it has no "
                               "tenant column, so no row outside a tenant (orphans means nothing)")
        table_orphans = _orphans(path, opts["orphans"][0], f"orphans of table {name!r}") if "orphans" in opts else None
        non_tx = opts.get("non_transactional", (None, "refuse"))
        if non_tx[1] not in NON_TRANSACTIONAL:
            raise MappingError(f"{path} line {_line(non_tx[0])}: table {name!r}: non_transactional must be "
                               f"{' or '.join(NON_TRANSACTIONAL)}, got {non_tx[1]!r}")
        if action == "drop" and "non_transactional" in opts:
            raise MappingError(f"{path} line {line}: table {name!r} is dropped, so non_transactional means nothing")
        target = name
        for key in ("rename", "merge_into"):
            if key in opts:
                target = _ident(path, opts[key][0], key)
                if target == name:
                    raise MappingError(f"{path} line {_line(opts[key][0])}: table {name!r}: {key} to itself")
        col = _ident(path, opts["tenant_column"][0], "tenant_column") if "tenant_column" in opts else default_col
        rules[name] = TableRule(name, action, target, None if action == "shared" else col, line,
                                merged="merge_into" in opts, orphans=table_orphans,
                                allow_non_transactional=non_tx[1] == "copy")
    _check_targets(path, rules)
    return Mapping(path, default_col, rules, unlisted, orphans)


def _check_targets(path: str, rules: dict[str, TableRule]) -> None:
    """Renames must not collide; a merge goes into a table that is itself kept, and not in a chain."""
    by_target: dict[str, TableRule] = {}
    for rule in rules.values():
        if rule.action == "drop":
            continue
        if rule.merged and rules.get(rule.target) is not None:
            into = rules[rule.target]
            if into.action == "drop":
                raise MappingError(f"{path} line {rule.line}: {rule.source!r} merges into {rule.target!r}, "
                                   f"which is dropped (line {into.line})")
            if into.merged:
                raise MappingError(f"{path} line {rule.line}: {rule.source!r} merges into {rule.target!r}, which "
                                   f"itself merges into {into.target!r} (line {into.line}); merge into the final table")
            continue
        if rule.merged:
            continue
        other = by_target.get(rule.target)
        if other is not None:
            raise MappingError(f"{path} line {rule.line}: {rule.source!r} becomes {rule.target!r}, as does "
                               f"{other.source!r} (line {other.line}); use merge_into to combine tables")
        by_target[rule.target] = rule


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping file; raises :class:`MappingError` naming the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{p}: cannot read the mapping file ({exc.strerror or exc})") from exc
    return parse_mapping(text, path=str(p))
