"""The decision client and filter selection, against a real authzd."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from authzd_superset.client import AuthzdClient, AuthzdError, RLSFilter, parse_timestamp
from authzd_superset.rls import FilterMismatch, select_filters
from conftest import ANALYTICS_DB_NAME, free_port
from hostile import HOSTILE_DEPARTMENTS


def sales_person(department: str = "Sales", **extra) -> dict:
    claims = {
        "sub": "sam", "email": "sam@example.com", "given_name": "Sam", "family_name": "Seller",
        "groups": ["Analytics Users"], "department": department,
    }
    claims.update(extra)
    return claims


@pytest.mark.parametrize(
    "name, claims, want_allowed, want_roles",
    [
        ("data engineer", {"sub": "erin", "email": "erin@example.com",
                           "groups": ["Data Engineers"]}, True, ["Alpha"]),
        ("analytics user in sales", sales_person(), True, ["Dept Sales", "Gamma"]),
        ("no mapped group", {"sub": "nobody", "email": "n@example.com",
                             "groups": ["Visitors"]}, False, []),
    ],
)
def test_decide(authzd_running, idp, name, claims, want_allowed, want_roles):
    client = AuthzdClient(authzd_running.url)
    got = client.decide(idp.mint(claims))
    assert got.allowed is want_allowed, f"{name}: got allowed {got.allowed}, reasons {got.reasons}"
    assert sorted(got.roles) == want_roles
    assert got.decision_id
    assert got.subject.username == claims["email"]
    assert got.expires_at > dt.datetime.now(dt.timezone.utc)
    if not want_allowed:
        assert got.reasons, "a refusal must carry reasons"


def test_decide_errors(authzd_running, idp):
    client = AuthzdClient(authzd_running.url)
    cases = [
        ("malformed", "not-a-token", "TOKEN_MALFORMED", 401),
        ("expired", idp.mint(dict(sales_person(), exp=int(time.time()) - 3600)),
         "TOKEN_EXPIRED", 401),
    ]
    for name, token, want_reason, want_status in cases:
        with pytest.raises(AuthzdError) as info:
            client.decide(token)
        assert info.value.reason == want_reason, name
        assert info.value.status == want_status, name
        assert info.value.decision_id, f"{name}: an error must carry the decision id"


def test_decide_unreachable():
    client = AuthzdClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(AuthzdError) as info:
        client.decide("x.y.z")
    assert info.value.reason == "UNREACHABLE"


@pytest.mark.parametrize("url", ["", "ftp://x", "127.0.0.1:8080"])
def test_client_refuses_bad_url(url):
    with pytest.raises(ValueError):
        AuthzdClient(url)


@pytest.mark.parametrize(
    "text, want",
    [
        ("2026-12-03T13:00:00Z", dt.datetime(2026, 12, 3, 13, tzinfo=dt.timezone.utc)),
        ("2026-12-03T13:00:00.123456789Z",
         dt.datetime(2026, 12, 3, 13, 0, 0, 123456, tzinfo=dt.timezone.utc)),
        ("2026-12-03T15:00:00+02:00", dt.datetime(2026, 12, 3, 13, tzinfo=dt.timezone.utc)),
    ],
)
def test_parse_timestamp(text, want):
    assert parse_timestamp(text) == want


def test_filter_id_is_stable_and_sortable(authzd_running, idp):
    client = AuthzdClient(authzd_running.url)
    a = client.decide(idp.mint(sales_person(team="East")))
    b = client.decide(idp.mint(sales_person(team="East")))
    ids_a = sorted(f.id for f in a.rls_filters)
    ids_b = sorted(f.id for f in b.rls_filters)
    assert ids_a == ids_b
    assert all(isinstance(i, int) for i in ids_a)
    assert len(set(ids_a)) == len(ids_a)
    assert RLSFilter.from_list(a.rls_filters[0].to_list()) == a.rls_filters[0]


@pytest.mark.parametrize(
    "name, database, schema, table, backend, want",
    [
        # The analytics database renders in SQLite: its own entries win.
        ("sqlite database", ANALYTICS_DB_NAME, "main", "sales", "sqlite",
         {("department", "sqlite"), ("team", "sqlite")}),
        ("default dialect elsewhere", "warehouse", "public", "sales", "postgresql",
         {("department", "postgresql"), ("team", "postgresql")}),
        ("case of the table name", "warehouse", None, "SALES", "postgresql",
         {("department", "postgresql"), ("team", "postgresql")}),
        ("schema.table entry", "warehouse", "finance", "revenue", "postgresql",
         {("department", "postgresql")}),
        ("schema must match", "warehouse", "other", "revenue", "postgresql", set()),
        ("ungoverned table", "warehouse", "public", "weather", "postgresql", set()),
    ],
)
def test_select_filters(authzd_running, idp, name, database, schema, table, backend, want):
    decision = AuthzdClient(authzd_running.url).decide(idp.mint(sales_person(team="East")))
    got = select_filters(decision.rls_filters, database, schema, table, backend)
    assert {(f.name, f.dialect) for f in got} == want, name


@pytest.mark.parametrize("backend", ["mysql", "trino", "snowflake", ""])
def test_select_filters_refuses_other_engines(authzd_running, idp, backend):
    decision = AuthzdClient(authzd_running.url).decide(idp.mint(sales_person()))
    with pytest.raises(FilterMismatch, match="dialect"):
        select_filters(decision.rls_filters, "warehouse", "public", "sales", backend)


def test_governed_table_without_claim_matches_nothing(authzd_running, idp):
    decision = AuthzdClient(authzd_running.url).decide(
        idp.mint({"sub": "erin", "email": "erin@example.com", "groups": ["Data Engineers"]})
    )
    got = select_filters(decision.rls_filters, ANALYTICS_DB_NAME, "main", "sales", "sqlite")
    assert got, "a governed table must get a match-nothing filter"


@pytest.mark.parametrize("department", HOSTILE_DEPARTMENTS)
def test_hostile_values_never_reach_the_clause(authzd_running, idp, department):
    decision = AuthzdClient(authzd_running.url).decide(idp.mint(sales_person(department)))
    assert decision.allowed
    for f in decision.rls_filters:
        for marker in ("{{", "{%", "{#", ":name", ":department", "'1'='1", "--", ";"):
            assert marker not in f.clause, f"clause {f.clause!r} holds {marker!r}"
