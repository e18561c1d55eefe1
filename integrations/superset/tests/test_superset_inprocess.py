"""The security manager inside a real Superset application, in process.

A real Superset app (from PyPI, SQLite metadata database) runs the manager
against a real authzd. The proof of issue 5 is here: clauses rendered by
authzd from hostile claim values go through Superset's own processing, the
Jinja template processor and SQLAlchemy ``text()`` of
``SqlaTable.get_sqla_row_level_filters`` for charts, and in addition the
``literal_binds`` compilation and sqlglot re-parsing of SQL Lab's RLS, and
then run against SQLite, which must return exactly the rows whose
department equals the claim.
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
import time

import pytest

from conftest import ANALYTICS_DB_NAME
from hostile import HOSTILE_DEPARTMENTS

HERE = pathlib.Path(__file__).resolve().parent
CONFIG = HERE.parent / "e2e" / "superset_config.py"

ROLES = ["Admin", "Alpha", "Gamma", "Dept Sales", "Dept Finance"]
PLAIN_ROWS = [
    ("Sales", "East", 100),
    ("Sales", "West", 200),
    ("Finance", "East", 300),
    ("Marketing", "West", 400),
    ("sales", "East", 500),  # another case: must not match "Sales"
    ("Sales ", "East", 600),  # trailing space: must not match "Sales"
]


def make_analytics_db(path: pathlib.Path) -> dict[str, list[int]]:
    """make_analytics_db creates the sales table; returns ids per department."""
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE sales (id INTEGER PRIMARY KEY, department TEXT, team TEXT, amount INTEGER)"
    )
    rows = list(PLAIN_ROWS) + [(d, "East", 1) for d in HOSTILE_DEPARTMENTS]
    con.executemany("INSERT INTO sales (department, team, amount) VALUES (?, ?, ?)", rows)
    con.commit()
    ids: dict[str, list[int]] = {}
    for rid, dept in con.execute("SELECT id, department FROM sales ORDER BY id"):
        ids.setdefault(dept, []).append(rid)
    con.close()
    return ids


@pytest.fixture(scope="session")
def superset_app(authzd, idp, tmp_path_factory):
    """superset_app is a Superset app with the authzd manager and its roles."""
    home = tmp_path_factory.mktemp("superset-inprocess")
    os.environ["AUTHZD_TEST_HOME"] = str(home)
    os.environ["AUTHZD_URL"] = authzd.url
    os.environ["AUTHZD_IDP_ISSUER"] = idp.issuer
    os.environ["SUPERSET_CONFIG_PATH"] = str(CONFIG)
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        import superset.connectors.sqla.models  # noqa: F401  (registers RLS tables)
        import superset.key_value.models  # noqa: F401  (the decision store)
        import superset.models.core  # noqa: F401
        from flask_appbuilder import Model
        from superset.extensions import db, security_manager

        db.create_all()
        Model.metadata.create_all(db.engine)
        for role in ROLES:
            security_manager.add_role(role)
        db.session.commit()
    app.config["AUTHZD_TEST_ANALYTICS"] = str(home / "analytics.db")
    app.config["AUTHZD_TEST_IDS"] = make_analytics_db(home / "analytics.db")
    return app


@pytest.fixture
def sm(superset_app):
    """sm is the app's security manager, inside an app context."""
    with superset_app.app_context():
        from superset.extensions import security_manager

        yield security_manager._get_current_object()


def person(department=None, groups=("Analytics Users",), sub="pat", **claims):
    c = {"sub": sub, "email": f"{sub}@example.com", "given_name": "Pat",
         "family_name": "Doe", "groups": list(groups)}
    if department is not None:
        c["department"] = department
    c.update(claims)
    return c


def login(sm, idp, claims, ttl_seconds=0):
    """login runs oauth_user_info as an OAuth callback would; returns userinfo."""
    return sm.oauth_user_info("authzd", {"id_token": idp.mint(claims, ttl_seconds),
                                         "access_token": "x"})


def signed_in_user(sm, userinfo):
    """signed_in_user registers the user as auth_user_oauth does, and sets g.user."""
    from flask import g

    user = sm.auth_user_oauth(userinfo)
    assert user is not None, getattr(g, "authzd_refusal", None)
    g.user = user
    return user


def sales_table(app):
    from superset.connectors.sqla.models import SqlaTable
    from superset.models.core import Database

    database = Database(
        database_name=ANALYTICS_DB_NAME,
        sqlalchemy_uri=f"sqlite:///{app.config['AUTHZD_TEST_ANALYTICS']}",
    )
    return SqlaTable(table_name="sales", schema="main", database=database)


def chart_ids(table) -> list[int]:
    """chart_ids runs the RLS filters the way a chart query gets them."""
    import sqlalchemy as sa

    filters = table.get_sqla_row_level_filters()
    query = (
        sa.select(sa.literal_column("id"))
        .select_from(sa.table("sales"))
        .where(sa.and_(*filters))
        .order_by(sa.literal_column("id"))
    )
    engine = sa.create_engine(table.database.sqlalchemy_uri)
    try:
        with engine.connect() as con:
            return [row[0] for row in con.execute(query)]
    finally:
        engine.dispose()


def sqllab_ids(table) -> list[int]:
    """sqllab_ids applies the RLS filters the way SQL Lab does, then runs the SQL."""
    from superset.sql.parse import SQLScript, Table

    database = table.database
    predicates = [
        str(p.compile(dialect=database.get_dialect(), compile_kwargs={"literal_binds": True}))
        for p in table.get_sqla_row_level_filters(include_global_guest_rls=False)
    ]
    statement = SQLScript("SELECT id FROM sales ORDER BY id", "sqlite").statements[0]
    statement.apply_rls(
        None,
        "main",
        {Table("sales", "main", None): [statement.parse_predicate(p) for p in predicates]},
        database.db_engine_spec.get_rls_method(),
    )
    sql = statement.format()
    con = sqlite3.connect(table.database.sqlalchemy_uri.removeprefix("sqlite:///"))
    try:
        return [row[0] for row in con.execute(sql)]
    finally:
        con.close()


@pytest.mark.parametrize("department", ["Sales", *HOSTILE_DEPARTMENTS])
def test_clause_through_superset_processing(superset_app, sm, idp, authzd_running, department):
    ids = superset_app.config["AUTHZD_TEST_IDS"]
    want = ids[department]
    assert want, "the table holds the value itself"
    with superset_app.test_request_context("/"):
        signed_in_user(sm, login(sm, idp, person(department)))
        table = sales_table(superset_app)
        assert chart_ids(table) == want
        assert sqllab_ids(table) == want
    con = sqlite3.connect(superset_app.config["AUTHZD_TEST_ANALYTICS"])
    try:
        count = con.execute("SELECT count(*) FROM sales").fetchone()[0]
    finally:
        con.close()
    assert count == len(PLAIN_ROWS) + len(HOSTILE_DEPARTMENTS), "table intact"


def test_team_and_department_groups_are_anded(superset_app, sm, idp, authzd_running):
    ids = superset_app.config["AUTHZD_TEST_IDS"]
    with superset_app.test_request_context("/"):
        signed_in_user(sm, login(sm, idp, person("Sales", team="East")))
        got = chart_ids(sales_table(superset_app))
    assert got == [ids["Sales"][0]]


def test_governed_table_without_claim_returns_no_rows(superset_app, sm, idp, authzd_running):
    with superset_app.test_request_context("/"):
        signed_in_user(sm, login(sm, idp, person(groups=["Data Engineers"], sub="erin")))
        assert chart_ids(sales_table(superset_app)) == []


def test_roles_are_exactly_the_decided_ones(superset_app, sm, idp, authzd_running):
    with superset_app.test_request_context("/"):
        user = signed_in_user(sm, login(sm, idp, person("Sales", sub="rory")))
        assert sorted(r.name for r in user.roles) == ["Dept Sales", "Gamma"]
        # The next login syncs: the department role goes, nothing is added.
        user = signed_in_user(sm, login(sm, idp, person(None, sub="rory")))
        assert sorted(r.name for r in user.roles) == ["Gamma"]


@pytest.mark.parametrize(
    "name, claims, want_code, want_text",
    [
        ("no mapped group", person(groups=["Visitors"], sub="vic"), "NOT_ALLOWED",
         "no group or claim of this person maps to a role"),
        ("role missing in Superset", person(cost_center="1000", sub="cora"),
         "ROLE_MISSING", "'Cost Center Reviewer'"),
    ],
)
def test_login_refusals(superset_app, sm, idp, authzd_running, name, claims, want_code, want_text):
    from flask import g, session

    from authzd_superset.manager import SESSION_KEY, AuthzdLoginRefused

    with superset_app.test_request_context("/"):
        with pytest.raises(AuthzdLoginRefused) as info:
            login(sm, idp, claims)
        refusal = g.authzd_refusal
        assert refusal.code == want_code, name
        assert want_text in refusal.text(), name
        assert refusal.decision_id
        assert refusal.decision_id in refusal.page()
        assert SESSION_KEY not in session
        assert info.value.refusal is refusal


def test_login_refused_when_authzd_is_down(superset_app, sm, idp, authzd):
    from flask import g

    from authzd_superset.manager import AuthzdLoginRefused

    authzd.stop()
    try:
        with superset_app.test_request_context("/"):
            with pytest.raises(AuthzdLoginRefused):
                login(sm, idp, person("Sales"))
            assert g.authzd_refusal.code == "UNREACHABLE"
    finally:
        authzd.start()


def test_no_decision_fails_the_query(superset_app, sm, idp, authzd_running):
    from flask import session

    from authzd_superset.manager import SESSION_KEY, AuthzdNoDecision

    with superset_app.test_request_context("/"):
        user = signed_in_user(sm, login(sm, idp, person("Sales", sub="nina")))
        session.pop(SESSION_KEY)
        sm.forget_decision(user.username)
        with pytest.raises(AuthzdNoDecision):
            sm.get_rls_filters(sales_table(superset_app))


def test_expired_decision_fails_the_query(superset_app, sm, idp, authzd_running):
    from flask import session

    from authzd_superset.manager import SESSION_KEY, AuthzdNoDecision

    with superset_app.test_request_context("/"):
        signed_in_user(sm, login(sm, idp, person("Sales", sub="exa")))
        session[SESSION_KEY] = dict(session[SESSION_KEY], exp=time.time() - 1)
        with pytest.raises(AuthzdNoDecision, match="expired"):
            sm.get_rls_filters(sales_table(superset_app))


def test_decision_of_another_user_is_not_used(superset_app, sm, idp, authzd_running):
    from flask import g

    from authzd_superset.manager import AuthzdNoDecision

    with superset_app.test_request_context("/"):
        other = signed_in_user(sm, login(sm, idp, person("Finance", sub="olga")))
        sm.forget_decision(other.username)
        signed_in_user(sm, login(sm, idp, person("Sales", sub="sven")))
        g.user = other
        with pytest.raises(AuthzdNoDecision, match="no authzd decision"):
            sm.get_rls_filters(sales_table(superset_app))


def test_query_without_session_uses_stored_decision(superset_app, sm, idp, authzd_running):
    """SQL Lab runs queries in a fresh request context, as this test does."""
    from flask import g

    ids = superset_app.config["AUTHZD_TEST_IDS"]
    with superset_app.test_request_context("/"):
        user = signed_in_user(sm, login(sm, idp, person("Finance", sub="fiona")))
    with superset_app.test_request_context("/"):
        g.user = user
        assert chart_ids(sales_table(superset_app)) == ids["Finance"]


def test_session_holds_a_small_reference(superset_app, sm, idp, authzd_running):
    from flask import session

    from authzd_superset.manager import SESSION_KEY

    with superset_app.test_request_context("/"):
        signed_in_user(sm, login(sm, idp, person("x" * 1500, sub="long")))
        assert set(session[SESSION_KEY]) == {"id", "exp", "provider", "user"}
        assert len(repr(session[SESSION_KEY])) < 300


def test_filters_are_memoized_per_request_and_sortable(superset_app, sm, idp, authzd_running):
    with superset_app.test_request_context("/"):
        signed_in_user(sm, login(sm, idp, person("Sales", team="East", sub="memo")))
        table = sales_table(superset_app)
        first = sm.get_rls_filters(table)
        first.sort(key=lambda f: f.id)  # Superset sorts the returned list in place
        second = sm.get_rls_filters(table)
        assert sorted(second, key=lambda f: f.id) == first
        assert {f.group_key for f in first} == {"department", "team"}
        assert sm.get_rls_cache_key(table) == sm.get_rls_cache_key(table)


def test_anonymous_query_fails(superset_app, sm):
    from flask import g
    from flask_login import AnonymousUserMixin

    from authzd_superset.manager import AuthzdNoDecision

    with superset_app.test_request_context("/"):
        g.user = AnonymousUserMixin()
        with pytest.raises(AuthzdNoDecision):
            sm.get_rls_filters(sales_table(superset_app))
