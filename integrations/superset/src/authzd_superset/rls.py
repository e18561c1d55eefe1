"""Selection of a decision's row-level security filters for one dataset.

This module does not import Superset, so that it can be tested alone.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .client import RLSFilter

__all__ = ["FilterMismatch", "select_filters"]

# Which Superset database backends a clause of each authzd dialect may run on.
_DIALECT_BACKENDS = {
    "postgresql": frozenset({"postgresql", "postgres"}),
    "mysql": frozenset({"mysql", "mariadb"}),
    "sqlite": frozenset({"sqlite"}),
}


class FilterMismatch(ValueError):
    """FilterMismatch is a filter rendered for a dialect the dataset's engine does not speak."""


def _entry_match(entry: str, database: str, names: frozenset[str]) -> Optional[str]:
    """_entry_match says how a filter's table entry matches a dataset.

    It returns "specific" for "database:table" entries of the dataset's
    database, "generic" for entries without a database, None otherwise.
    """
    db, sep, name = entry.rpartition(":")
    if not sep:
        db, name = "", entry
    if name.casefold() not in names:
        return None
    if not sep:
        return "generic"
    return "specific" if db == database else None


def select_filters(
    filters: Sequence[RLSFilter],
    database: str,
    schema: Optional[str],
    table: str,
    backend: str,
) -> list[RLSFilter]:
    """select_filters picks the decision's filters that apply to a dataset.

    A filter applies when one of its tables is the dataset's ``table`` or
    ``schema.table`` (compared without regard to case). For each filter
    name, entries that name the dataset's database (``analytics:sales``)
    win over entries that name none. Every filter picked must have been
    rendered for a dialect that the dataset's database backend speaks;
    otherwise FilterMismatch is raised, since a clause written for one
    engine's quoting rules is not safe on another.
    """
    names = {table.casefold()}
    if schema:
        names.add(f"{schema}.{table}".casefold())
    frozen = frozenset(names)
    specific: dict[str, list[RLSFilter]] = {}
    generic: dict[str, list[RLSFilter]] = {}
    order: list[str] = []
    for f in filters:
        kinds = {_entry_match(e, database, frozen) for e in f.tables} - {None}
        if not kinds:
            continue
        if f.name not in order:
            order.append(f.name)
        target = specific if "specific" in kinds else generic
        target.setdefault(f.name, []).append(f)
    picked: list[RLSFilter] = []
    for name in order:
        picked.extend(specific.get(name) or generic.get(name, []))
    for f in picked:
        if f.dialect and backend not in _DIALECT_BACKENDS.get(f.dialect, frozenset()):
            raise FilterMismatch(
                f"authzd rendered row-level security filter {f.name!r} for dialect "
                f"{f.dialect!r}, but table {table!r} is in database {database!r} "
                f"with backend {backend!r}; configure authzd's policy.databases "
                f"for {database!r}. The query is refused rather than run unfiltered."
            )
    return picked
