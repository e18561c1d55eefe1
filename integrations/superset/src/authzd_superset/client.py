"""HTTP client of authzd's decision API (``POST /v1/decisions``).

The client sends the raw OIDC ID token and turns the answer into a
:class:`Decision`. Every failure (authzd unreachable, an error status, an
answer that is not a well-formed decision) raises :class:`AuthzdError`, so
that a caller can never mistake a failure for a decision.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from typing import Any, Optional, Sequence, Union

import requests

__all__ = ["AuthzdClient", "AuthzdError", "Decision", "RLSFilter", "Subject"]

Timeout = Union[float, tuple[float, float]]

#: Default (connect, read) timeout in seconds.
DEFAULT_TIMEOUT: tuple[float, float] = (2.0, 5.0)


class AuthzdError(Exception):
    """AuthzdError is a failure to obtain a decision from authzd.

    ``reason`` is authzd's stable reason code (``TOKEN_EXPIRED``,
    ``AUDIENCE_MISMATCH``, ...) or one of this client's own:
    ``UNREACHABLE``, ``TIMEOUT``, ``BAD_RESPONSE``. ``decision_id`` is the id
    authzd gave the failed request, when it answered at all.
    """

    def __init__(
        self,
        message: str,
        reason: str,
        decision_id: str = "",
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.decision_id = decision_id
        self.status = status

    def __str__(self) -> str:
        parts = [self.message, f"reason {self.reason}"]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.decision_id:
            parts.append(f"decision id {self.decision_id}")
        return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class Subject:
    """Subject is the person a decision is about, as authzd read the token."""

    issuer: str
    subject: str
    username: str
    email: str
    first_name: str
    last_name: str
    groups: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class RLSFilter:
    """RLSFilter is one rendered row-level security filter of a decision.

    ``tables`` entries are ``table``, ``schema.table``, or either prefixed
    with a Superset database name and a colon (``analytics:sales``) when
    the clause was rendered for that database's dialect.
    """

    name: str
    tables: tuple[str, ...]
    group_key: str
    filter_type: str
    clause: str
    dialect: str

    @property
    def id(self) -> int:
        """id is a stable, sortable integer derived from the filter's content.

        Superset sorts filters by id and builds cache keys from them; a
        content hash keeps the order and the keys the same across requests,
        sessions and processes. The high bit range keeps it clear of the
        ids of Superset's own RLS filter rows.
        """
        digest = hashlib.sha256(
            "\x00".join((self.name, self.group_key, self.clause, self.dialect)).encode()
        ).digest()
        return (1 << 62) | int.from_bytes(digest[:7], "big")

    def to_list(self) -> list[Any]:
        """to_list returns a compact JSON-able form, for the session cookie."""
        return [
            self.name,
            list(self.tables),
            self.group_key,
            self.filter_type,
            self.clause,
            self.dialect,
        ]

    @classmethod
    def from_list(cls, row: Sequence[Any]) -> "RLSFilter":
        """from_list is the inverse of :meth:`to_list`."""
        name, tables, group_key, filter_type, clause, dialect = row
        return cls(name, tuple(tables), group_key, filter_type, clause, dialect)


@dataclasses.dataclass(frozen=True)
class Decision:
    """Decision is authzd's answer for one ID token."""

    decision_id: str
    allowed: bool
    subject: Subject
    roles: tuple[str, ...]
    rls_filters: tuple[RLSFilter, ...]
    reasons: tuple[str, ...]
    policy_revision: str
    expires_at: dt.datetime


_FRACTION = re.compile(r"\.(\d+)")


def parse_timestamp(value: str) -> dt.datetime:
    """parse_timestamp reads an RFC 3339 timestamp as protobuf JSON writes it.

    Fractions beyond microseconds (protobuf writes nanoseconds) are cut.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return parsed.astimezone(dt.timezone.utc)


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} is {type(value).__name__}, want string")
    return value


def _strs(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"field {key!r} is not a list of strings")
    return tuple(value)


def decision_from_json(body: Any) -> Decision:
    """decision_from_json checks and converts a decision's JSON form.

    It raises ValueError naming the first field that is missing or of the
    wrong type: a half-read decision is never returned.
    """
    if not isinstance(body, dict):
        raise ValueError("decision is not a JSON object")
    allowed = body.get("allowed")
    if not isinstance(allowed, bool):
        raise ValueError("field 'allowed' is missing or not a boolean")
    subj = body.get("subject") or {}
    if not isinstance(subj, dict):
        raise ValueError("field 'subject' is not an object")
    filters = body.get("rls_filters", [])
    if not isinstance(filters, list):
        raise ValueError("field 'rls_filters' is not a list")
    parsed_filters = []
    for i, f in enumerate(filters):
        if not isinstance(f, dict):
            raise ValueError(f"rls_filters[{i}] is not an object")
        clause = _str(f, "clause")
        if not clause.strip():
            raise ValueError(f"rls_filters[{i}] has an empty clause")
        parsed_filters.append(
            RLSFilter(
                name=_str(f, "name"),
                tables=_strs(f, "tables"),
                group_key=_str(f, "group_key"),
                filter_type=_str(f, "filter_type") or "REGULAR",
                clause=clause,
                dialect=_str(f, "dialect"),
            )
        )
    decision_id = _str(body, "decision_id")
    if not decision_id:
        raise ValueError("field 'decision_id' is missing")
    expires = _str(body, "expires_at")
    if not expires:
        raise ValueError("field 'expires_at' is missing")
    return Decision(
        decision_id=decision_id,
        allowed=allowed,
        subject=Subject(
            issuer=_str(subj, "issuer"),
            subject=_str(subj, "subject"),
            username=_str(subj, "username"),
            email=_str(subj, "email"),
            first_name=_str(subj, "first_name"),
            last_name=_str(subj, "last_name"),
            groups=_strs(subj, "groups"),
        ),
        roles=_strs(body, "roles"),
        rls_filters=tuple(parsed_filters),
        reasons=_strs(body, "reasons"),
        policy_revision=_str(body, "policy_revision"),
        expires_at=parse_timestamp(expires),
    )


def _error_from_response(resp: requests.Response) -> AuthzdError:
    """_error_from_response reads grpc-gateway's status JSON."""
    decision_id = resp.headers.get("x-decision-id", "")
    message = f"authzd answered HTTP {resp.status_code}"
    reason = "BAD_RESPONSE"
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("message"), str) and body["message"]:
            message = body["message"]
        for detail in body.get("details") or []:
            if not isinstance(detail, dict):
                continue
            if str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
                reason = str(detail.get("reason") or reason)
                meta = detail.get("metadata") or {}
                if isinstance(meta, dict) and meta.get("decision_id"):
                    decision_id = decision_id or str(meta["decision_id"])
    return AuthzdError(message, reason, decision_id, resp.status_code)


class AuthzdClient:
    """AuthzdClient asks authzd for decisions over its REST API.

    ``url`` is authzd's base URL (``https://authzd.internal:8080``).
    ``timeout`` is seconds, or a (connect, read) pair. ``ca_bundle`` is a
    PEM file of CAs that authzd's certificate must chain to (default: the
    system's). ``client_cert`` is a PEM file holding certificate and key,
    or a (certificate, key) pair, for mutual TLS.
    """

    def __init__(
        self,
        url: str,
        timeout: Timeout = DEFAULT_TIMEOUT,
        ca_bundle: Optional[str] = None,
        client_cert: Union[None, str, tuple[str, str]] = None,
        session: Optional[requests.Session] = None,
    ) -> None:
        if not url or not url.startswith(("http://", "https://")):
            raise ValueError(f"authzd url {url!r}: want http:// or https://")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = session or requests.Session()
        self._session.trust_env = False
        self._session.verify = ca_bundle if ca_bundle else True
        if client_cert:
            self._session.cert = (
                tuple(client_cert) if isinstance(client_cert, (list, tuple)) else client_cert
            )

    def decide(self, id_token: str, context: Optional[dict[str, Any]] = None) -> Decision:
        """decide returns authzd's decision about the person id_token names.

        A decision with ``allowed`` false is returned, not raised: a policy
        that says no is an answer. Anything else that is not a decision
        raises AuthzdError.
        """
        body: dict[str, Any] = {"id_token": id_token}
        if context:
            body["context"] = context
        try:
            resp = self._session.post(
                self.url + "/v1/decisions",
                json=body,
                timeout=self.timeout,
                headers={"Accept": "application/json"},
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise AuthzdError(
                f"authzd at {self.url} did not answer in time: {exc}", "TIMEOUT"
            ) from exc
        except requests.RequestException as exc:
            raise AuthzdError(
                f"authzd at {self.url} is unreachable: {exc}", "UNREACHABLE"
            ) from exc
        if resp.status_code != 200:
            raise _error_from_response(resp)
        try:
            return decision_from_json(resp.json())
        except ValueError as exc:
            raise AuthzdError(
                f"authzd answered with a malformed decision: {exc}",
                "BAD_RESPONSE",
                resp.headers.get("x-decision-id", ""),
                resp.status_code,
            ) from exc
