"""Fixtures that run real authzd processes on loopback for the tests.

Two authzd processes run for the whole session:

* ``idp``: ``authzd serve --dev``, used only as the OIDC identity provider
  (discovery, JWKS, token minting, the authorization-code flow);
* ``authzd``: ``authzd serve --config`` trusting the dev issuer, rendering
  clauses for PostgreSQL by default and for SQLite in the Superset database
  named ``analytics``. This is the decision service under test; it can be
  stopped and started again while the identity provider stays up.

The binary is ``$AUTHZD_BIN`` when set, otherwise built from the repository.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import time
from typing import Any, Optional

import pytest
import requests

REPO = pathlib.Path(__file__).resolve().parents[3]
ANALYTICS_DB_NAME = "analytics"

#: TIMINGS collects durations (seconds) of slow steps, printed at the end.
TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the measured durations of the slow steps."""
    if TIMINGS:
        terminalreporter.section("authzd superset timings")
        for name, secs in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {secs:.1f}s")


def free_port() -> int:
    """free_port returns a loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: Optional[subprocess.Popen] = None,
              log: Optional[pathlib.Path] = None) -> None:
    """wait_http polls url until it answers 200, failing at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log else ""
            pytest.fail(f"process for {url} exited with {proc.returncode}:\n{tail}")
        try:
            resp = requests.get(url, timeout=2)
            if resp.status_code == 200:
                return
            last = resp.status_code
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log else ""
    pytest.fail(f"{url} not ready after {timeout}s (last: {last}):\n{tail}")


class AuthzdProcess:
    """AuthzdProcess is one `authzd serve` process on loopback ports."""

    def __init__(self, binary: str, args: list[str], http_port: int, log: pathlib.Path,
                 cwd: pathlib.Path, ready_path: str = "/readyz") -> None:
        self.binary = binary
        self.args = args
        self.http_port = http_port
        self.log = log
        self.cwd = cwd
        self.ready_path = ready_path
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        """url is the HTTP base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        """start runs the process and waits until it is ready."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "serve", *self.args],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd,
                env={k: v for k, v in os.environ.items() if not k.startswith("AUTHZD_")},
            )
        wait_http(self.url + self.ready_path, 60, self.proc, self.log)

    def stop(self) -> None:
        """stop ends the process and waits for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    @property
    def running(self) -> bool:
        """running reports whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None


class DevIdP(AuthzdProcess):
    """DevIdP is `authzd serve --dev`, the identity provider of the tests."""

    @property
    def issuer(self) -> str:
        """issuer is the dev issuer URL."""
        return self.url + "/dev"

    def mint(self, claims: dict[str, Any], ttl_seconds: int = 0) -> str:
        """mint returns an ID token for claims, signed by the dev issuer."""
        resp = requests.post(
            self.issuer + "/token",
            json={"claims": claims, "ttl_seconds": ttl_seconds},
            timeout=10,
        )
        resp.raise_for_status()
        return resp.json()["id_token"]


@pytest.fixture(scope="session")
def authzd_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """authzd_bin is the authzd binary: $AUTHZD_BIN, or built from the repo."""
    env = os.environ.get("AUTHZD_BIN")
    if env:
        return env
    out = tmp_path_factory.mktemp("bin") / "authzd"
    subprocess.run(
        ["go", "build", "-o", str(out), "./cmd/authzd"], cwd=REPO, check=True,
    )
    return str(out)


@pytest.fixture(scope="session")
def idp(authzd_bin: str, tmp_path_factory: pytest.TempPathFactory) -> DevIdP:
    """idp is a running `authzd serve --dev`."""
    work = tmp_path_factory.mktemp("idp")
    users = work / "users.json"
    users.write_text(json.dumps([
        {"sub": "erin", "email": "erin@example.com", "name": "Erin Engineer",
         "groups": ["Data Engineers"]},
    ]))
    port = free_port()
    p = DevIdP(
        authzd_bin,
        ["--dev", "--http-addr", f"127.0.0.1:{port}", "--grpc-addr", f"127.0.0.1:{free_port()}",
         "--dev-users", str(users)],
        port, work / "authzd-dev.log", work,
        ready_path="/dev/.well-known/openid-configuration",
    )
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def authzd(authzd_bin: str, idp: DevIdP, tmp_path_factory: pytest.TempPathFactory) -> AuthzdProcess:
    """authzd is the decision service under test, trusting the dev issuer."""
    work = tmp_path_factory.mktemp("authzd")
    port = free_port()
    cfg = work / "authzd.yaml"
    cfg.write_text(
        f"grpc_addr: 127.0.0.1:{free_port()}\n"
        f"http_addr: 127.0.0.1:{port}\n"
        "policy:\n"
        f"  dir: {REPO / 'policies'}\n"
        "  dialect: postgresql\n"
        "  databases:\n"
        f"    {ANALYTICS_DB_NAME}: sqlite\n"
        "issuers:\n"
        f"  - issuer: {idp.issuer}\n"
        "    audiences: [superset]\n"
    )
    p = AuthzdProcess(authzd_bin, ["--config", str(cfg)], port, work / "authzd.log", work)
    p.start()
    yield p
    p.stop()


@pytest.fixture
def authzd_running(authzd: AuthzdProcess) -> AuthzdProcess:
    """authzd_running is authzd, started again if a test stopped it."""
    if not authzd.running:
        authzd.start()
    return authzd
