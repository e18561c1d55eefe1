"""End to end: a real Superset from PyPI, logging people in through authzd.

The harness runs, on loopback: the dev identity provider (``authzd serve
--dev``), the decision service (``authzd serve --config``, clauses rendered
for SQLite in the ``analytics`` database), and Superset (``superset run``)
with the authzd security manager, ``ENABLE_TEMPLATE_PROCESSING`` and
``RLS_IN_SQLLAB`` on, a SQLite metadata database migrated with ``superset db
upgrade`` and ``superset init``, and a SQLite analytics database whose
``sales`` table is registered as a dataset. A requests.Session with a
cookie jar follows the real redirects of the OAuth login.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import sqlite3
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest
import requests

from conftest import TIMINGS, free_port, wait_http

pytestmark = pytest.mark.e2e

HERE = pathlib.Path(__file__).resolve().parent
E2E = HERE.parent / "e2e"
PROVIDER = "authzd"

HOSTILE = "x' OR '1'='1 {{ 7*7 }} {% if 1 %}:name{% endif %} {# c #} -- ;"
ROWS = [
    ("Sales", "East", 100),
    ("Sales", "West", 200),
    ("Finance", "East", 300),
    ("Finance", "West", 400),
    ("Marketing", "East", 500),
    (HOSTILE, "East", 600),
]


def ids_where(pred) -> list[int]:
    return [i + 1 for i, row in enumerate(ROWS) if pred(row)]


class Superset:
    """Superset is a `superset run` server prepared for the test."""

    def __init__(self, home: pathlib.Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = home / "superset.log"
        self.ids: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 600) -> str:
        bindir = pathlib.Path(sys.executable).parent
        done = subprocess.run(
            [str(bindir / "superset"), *args], env=self.env, cwd=self.home,
            capture_output=True, text=True, timeout=timeout,
        )
        if done.returncode != 0:
            pytest.fail(f"superset {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def prepare(self, analytics_uri: str) -> None:
        t0 = time.monotonic()
        self.cli("db", "upgrade")
        TIMINGS["superset db upgrade"] = time.monotonic() - t0
        t0 = time.monotonic()
        self.cli("init")
        TIMINGS["superset init"] = time.monotonic() - t0
        t0 = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(E2E / "setup_superset.py"), analytics_uri],
            env=self.env, cwd=self.home, capture_output=True, text=True, timeout=600,
        )
        if done.returncode != 0:
            pytest.fail(f"setup_superset.py failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        self.ids = json.loads(done.stdout.strip().splitlines()[-1])
        TIMINGS["superset dataset and roles"] = time.monotonic() - t0

    def start(self) -> None:
        t0 = time.monotonic()
        bindir = pathlib.Path(sys.executable).parent
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(bindir / "superset"), "run", "-h", "127.0.0.1", "-p", str(self.port),
                 "--with-threads"],
                env=self.env, cwd=self.home, stdout=out, stderr=subprocess.STDOUT,
            )
        wait_http(self.url + "/health", 180, self.proc, self.log)
        TIMINGS["superset start"] = time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def superset(authzd, idp, tmp_path_factory):
    home = tmp_path_factory.mktemp("superset-e2e")
    analytics = home / "analytics.db"
    con = sqlite3.connect(analytics)
    con.execute(
        "CREATE TABLE sales (id INTEGER PRIMARY KEY, department TEXT, team TEXT, amount INTEGER)"
    )
    con.executemany("INSERT INTO sales (department, team, amount) VALUES (?, ?, ?)", ROWS)
    con.commit()
    con.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHZD_", "SUPERSET_"))}
    env.update(
        SUPERSET_CONFIG_PATH=str(E2E / "superset_config.py"),
        AUTHZD_TEST_HOME=str(home),
        AUTHZD_URL=authzd.url,
        AUTHZD_IDP_ISSUER=idp.issuer,
        PYTHONPATH=str(E2E),
    )
    env.pop("AUTHLIB_INSECURE_TRANSPORT", None)  # loopback HTTP must work without it
    server = Superset(home, env)
    server.prepare(f"sqlite:///{analytics}")
    server.start()
    yield server
    server.stop()


def oauth_login(superset: Superset, idp, user: str, groups=(), claims=None, ttl=None):
    """oauth_login follows Superset's OAuth login through authzd's authorize endpoint.

    The dev authorize endpoint approves the person named in the request, as a
    real identity provider's login form would; everything else is the
    redirects Superset and the identity provider send.
    """
    s = requests.Session()
    r = s.get(f"{superset.url}/login/{PROVIDER}", allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text[:500]
    authorize = r.headers["Location"]
    assert authorize.startswith(idp.issuer + "/authorize?"), authorize
    params = [("user", user)] + [("group", g) for g in groups]
    params += [("claim", f"{k}={v}") for k, v in (claims or {}).items()]
    if ttl:
        params.append(("ttl", str(ttl)))
    r = s.get(authorize + "&" + urlencode(params), allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text[:500]
    callback = r.headers["Location"]
    assert callback.startswith(f"{superset.url}/oauth-authorized/{PROVIDER}?"), callback
    r = s.get(callback, allow_redirects=False, timeout=60)
    return s, r


def logged_in(superset, idp, user, groups=(), claims=None, ttl=None) -> requests.Session:
    s, r = oauth_login(superset, idp, user, groups, claims, ttl)
    assert r.status_code == 302, f"login of {user} refused: {r.status_code} {r.text[:1000]}"
    return s


def my_roles(s: requests.Session, superset: Superset) -> set[str]:
    r = s.get(f"{superset.url}/api/v1/me/roles/", timeout=30)
    assert r.status_code == 200, r.text[:500]
    return set(r.json()["result"]["roles"])


def chart_data(s, superset, result_type="full") -> requests.Response:
    body = {
        "datasource": {"id": superset.ids["dataset_id"], "type": "table"},
        "force": True,
        "queries": [{"columns": ["id", "department", "team"], "metrics": [], "row_limit": 1000}],
        "result_type": result_type,
        "result_format": "json",
    }
    return s.post(f"{superset.url}/api/v1/chart/data", json=body, timeout=60)


def chart_ids(s, superset) -> list[int]:
    r = chart_data(s, superset)
    assert r.status_code == 200, r.text[:1000]
    return sorted(row["id"] for row in r.json()["result"][0]["data"])


def sqllab(s, superset, sql) -> requests.Response:
    body = {
        "database_id": superset.ids["database_id"], "sql": sql, "runAsync": False,
        "schema": "main", "tab": "e2e", "client_id": secrets.token_hex(5),
        "queryLimit": 1000, "select_as_cta": False,
    }
    return s.post(f"{superset.url}/api/v1/sqllab/execute/", json=body, timeout=60)


def sqllab_ids(s, superset, sql) -> list[int]:
    r = sqllab(s, superset, sql)
    assert r.status_code == 200, r.text[:1000]
    return sorted(row["id"] for row in r.json()["data"])


def test_data_engineer_gets_alpha(superset, idp, authzd_running):
    s = logged_in(superset, idp, "erin", ["Data Engineers"])
    assert my_roles(s, superset) == {"Alpha"}
    # sales is governed and Erin has no department: deny by default.
    assert chart_ids(s, superset) == []


def test_sales_analyst_sees_sales_rows_only(superset, idp, authzd_running):
    s = logged_in(superset, idp, "sam", ["Analytics Users"], {"department": "Sales"})
    assert my_roles(s, superset) == {"Gamma", "Dept Sales"}
    want = ids_where(lambda row: row[0] == "Sales")
    assert chart_ids(s, superset) == want
    r = chart_data(s, superset, result_type="query")
    assert r.status_code == 200, r.text[:1000]
    sql = r.json()["result"][0]["query"]
    assert "department = 'Sales'" in sql, sql
    assert sqllab_ids(s, superset, "SELECT id, department FROM sales") == want
    assert sqllab_ids(s, superset, "SELECT id FROM sales WHERE 1 = 1 OR department <> ''") == want


def test_team_claim_narrows_further(superset, idp, authzd_running):
    s = logged_in(superset, idp, "tess", ["Analytics Users"], {"department": "Sales", "team": "East"})
    assert chart_ids(s, superset) == ids_where(lambda row: row[:2] == ("Sales", "East"))


def test_injection_payload_sees_no_foreign_rows(superset, idp, authzd_running):
    s = logged_in(superset, idp, "mallory", ["Data Engineers"], {"department": HOSTILE})
    assert my_roles(s, superset) == {"Alpha"}
    want = ids_where(lambda row: row[0] == HOSTILE)
    assert chart_ids(s, superset) == want
    assert sqllab_ids(s, superset, "SELECT id, department FROM sales") == want
    assert sqllab_ids(s, superset, "SELECT id FROM sales WHERE department = 'Sales'") == []


def test_person_without_mapped_group_is_refused_with_reason(superset, idp, authzd_running):
    s, r = oauth_login(superset, idp, "vic", ["Visitors"])
    assert r.status_code == 403
    assert "no group or claim of this person maps to a role" in r.text
    assert "Decision id" in r.text
    assert "Invalid login" not in r.text
    assert s.get(f"{superset.url}/api/v1/me/roles/", timeout=30).status_code == 401


def test_role_missing_in_superset_is_named(superset, idp, authzd_running):
    s, r = oauth_login(superset, idp, "cora", ["Analytics Users"], {"cost_center": "1000"})
    assert r.status_code == 403
    assert "Cost Center Reviewer" in r.text and "missing in Superset" in r.text


def test_authzd_stopped_refuses_login_and_fails_queries(superset, idp, authzd):
    if not authzd.running:
        authzd.start()
    ttl = 30
    s = logged_in(superset, idp, "tim", ["Analytics Users"], {"department": "Sales"}, ttl=ttl)
    sales = ids_where(lambda row: row[0] == "Sales")
    assert chart_ids(s, superset) == sales
    authzd.stop()
    try:
        _, r = oauth_login(superset, idp, "una", ["Analytics Users"], {"department": "Sales"})
        assert r.status_code == 403
        assert "unreachable" in r.text and "UNREACHABLE" in r.text
        # Tim's decision holds until it expires; after that his queries fail.
        deadline = time.monotonic() + ttl + 90
        while True:
            r = chart_data(s, superset)
            if r.status_code != 200:
                break
            got = sorted(row["id"] for row in r.json()["result"][0]["data"])
            assert got == sales, "an answer before expiry must still be filtered"
            assert time.monotonic() < deadline, "queries kept working after the decision expired"
            time.sleep(1)
        # The expiry may fall between the request's session check (401, and
        # the person is signed out) and the query's own check (403): both
        # refuse, and the next request is refused too.
        refusals = [r, chart_data(s, superset)]
        for r in refusals:
            assert r.status_code in (401, 403), r.text[:500]
        assert any("sign in again" in r.text for r in refusals), [r.text for r in refusals]
        # Signing in again is refused while authzd is down.
        _, r = oauth_login(superset, idp, "tim", ["Analytics Users"], {"department": "Sales"})
        assert r.status_code == 403
    finally:
        authzd.start()
