"""Superset security manager that takes roles and row-level security from authzd.

Turn it on in ``superset_config.py``::

    from authzd_superset import AuthzdSecurityManager
    CUSTOM_SECURITY_MANAGER = AuthzdSecurityManager
    AUTHZD_URL = "https://authzd.internal:8080"

What it changes, and why (Flask-AppBuilder 5, Superset 6):

* ``oauth_user_info`` sends the raw ``id_token`` of the OAuth token response
  to authzd and refuses the login unless authzd answers ``allowed: true``.
* Role calculation is taken over: the decided roles, and only they, are
  applied at every login. Flask-AppBuilder would otherwise ignore role keys
  while ``AUTH_ROLES_MAPPING`` is empty, drop unknown roles silently and
  always add ``AUTH_USER_REGISTRATION_ROLE``.
* A refusal shows authzd's reasons and decision id on a page of its own,
  instead of Flask-AppBuilder's bare "Invalid login" (which Superset 6's
  login page does not even display).
* ``get_rls_filters`` returns the decision's filters for the dataset. The
  decision is kept in the session until its ``expires_at``; after that the
  person is signed out and sent through the OAuth login again. Without a
  decision every query on a dataset fails: none runs unfiltered.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import time
from typing import Any, NamedTuple, Optional, Sequence
from urllib.parse import quote

from flask import current_app, g, has_request_context, jsonify, make_response, redirect
from flask import request, session
from flask_appbuilder import expose
from flask_appbuilder.const import AUTH_OAUTH
from flask_appbuilder.security.views import AuthOAuthView
from flask_login import logout_user

from superset.errors import ErrorLevel, SupersetError, SupersetErrorType
from superset.exceptions import SupersetSecurityException
from superset.security import SupersetSecurityManager

from .client import DEFAULT_TIMEOUT, AuthzdClient, AuthzdError, Decision, RLSFilter
from .rls import FilterMismatch, select_filters

__all__ = [
    "AuthzdNoDecision",
    "AuthzdOAuthView",
    "AuthzdRLSFilter",
    "AuthzdSecurityManager",
    "Refusal",
]

logger = logging.getLogger(__name__)

#: SESSION_KEY is where the person's decision lives in the Flask session.
SESSION_KEY = "authzd_decision"

#: ROLES_KEY carries the decided role names from oauth_user_info to the role
#: calculation.
ROLES_KEY = "authzd_roles"

# Paths that must work without a decision: signing in and out, static files.
_OPEN_PATHS = ("/login", "/logout", "/oauth-authorized/", "/static/", "/health", "/ping")



@dataclasses.dataclass(frozen=True)
class Refusal:
    """Refusal says why a login was refused, for the person and the logs."""

    title: str
    reasons: tuple[str, ...]
    decision_id: str = ""
    code: str = ""

    def text(self) -> str:
        """text is the refusal as one line."""
        out = self.title
        if self.reasons:
            out += ": " + "; ".join(self.reasons)
        if self.code:
            out += f" (reason {self.code})"
        if self.decision_id:
            out += f" (decision id {self.decision_id})"
        return out

    def page(self) -> str:
        """page renders the refusal as a small HTML page."""
        items = "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons)
        code = f"<p>Reason code: <code>{html.escape(self.code)}</code></p>" if self.code else ""
        did = (
            f"<p>Decision id: <code>{html.escape(self.decision_id)}</code> "
            "(give it to your administrator)</p>"
            if self.decision_id
            else ""
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            "<title>Sign-in refused</title></head><body>"
            f"<h1>Sign-in refused</h1><p>{html.escape(self.title)}</p>"
            f"<ul>{items}</ul>{code}{did}"
            "<p><a href='/login/'>Back to the sign-in page</a></p>"
            "</body></html>"
        )


class AuthzdLoginRefused(Exception):
    """AuthzdLoginRefused ends oauth_user_info when the login is refused."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.text())
        self.refusal = refusal


class AuthzdNoDecision(SupersetSecurityException):
    """AuthzdNoDecision fails a query when no usable decision is at hand."""

    def __init__(self, message: str) -> None:
        super().__init__(
            SupersetError(
                message=message,
                error_type=SupersetErrorType.DATASOURCE_SECURITY_ACCESS_ERROR,
                level=ErrorLevel.ERROR,
            )
        )


class AuthzdRLSFilter(NamedTuple):
    """AuthzdRLSFilter is what get_rls_filters returns for an authzd filter.

    Superset reads ``id`` (sortable), ``group_key`` (None for a group of its
    own) and ``clause``; ``name`` is the filter's name in the policy.
    """

    id: int
    group_key: Optional[str]
    clause: str
    name: str


class AuthzdOAuthView(AuthOAuthView):
    """AuthzdOAuthView shows why a login was refused.

    Flask-AppBuilder turns any failure of ``oauth_user_info`` into a flashed
    "Invalid login" that Superset 6's login page never displays; this view
    answers a refused login with a page that gives authzd's reasons and the
    decision id, with status 403.
    """

    @expose("/oauth-authorized/<provider>")
    def oauth_authorized(self, provider: str) -> Any:
        g.authzd_refusal = None
        response = super().oauth_authorized(provider)
        refusal: Optional[Refusal] = getattr(g, "authzd_refusal", None)
        if refusal is None:
            return response
        # Drop Flask-AppBuilder's bare "Invalid login" flash: the page says why.
        session.pop("_flashes", None)
        page = make_response(refusal.page(), 403)
        page.headers["Content-Type"] = "text/html; charset=utf-8"
        page.headers["Cache-Control"] = "no-store"
        return page


def _timeout(value: Any) -> Any:
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, (list, tuple)):
        connect, read = value
        return (float(connect), float(read))
    return float(value)


class AuthzdSecurityManager(SupersetSecurityManager):
    """AuthzdSecurityManager is Superset's security manager, deciding with authzd.

    Configuration keys in ``superset_config.py``:

    ``AUTHZD_URL``
        authzd's base URL. Required.
    ``AUTHZD_TIMEOUT``
        seconds, or (connect, read); default (2, 5).
    ``AUTHZD_CA_BUNDLE``
        PEM file of the CAs that authzd's certificate chains to.
    ``AUTHZD_CLIENT_CERT``
        PEM file with certificate and key, or a (certificate, key) pair, for
        mutual TLS.
    """

    authoauthview = AuthzdOAuthView

    def __init__(self, appbuilder: Any) -> None:
        super().__init__(appbuilder)
        config = current_app.config
        if not config.get("AUTHZD_URL"):
            raise RuntimeError(
                "authzd_superset: AUTHZD_URL is not set in superset_config.py; "
                "it names authzd's base URL, for example http://127.0.0.1:8080"
            )
        self._authzd = AuthzdClient(
            config["AUTHZD_URL"],
            timeout=_timeout(config.get("AUTHZD_TIMEOUT")),
            ca_bundle=config.get("AUTHZD_CA_BUNDLE"),
            client_cert=config.get("AUTHZD_CLIENT_CERT"),
        )
        if config.get("AUTH_TYPE") != AUTH_OAUTH:
            logger.warning(
                "authzd_superset decides OAuth logins only; with AUTH_TYPE %r no "
                "person gets a decision and every query on a dataset fails",
                config.get("AUTH_TYPE"),
            )
        if not (config.get("FEATURE_FLAGS") or {}).get("RLS_IN_SQLLAB"):
            logger.warning(
                "the RLS_IN_SQLLAB feature flag is off: anyone with SQL Lab access "
                "reads governed tables without row-level security"
            )

    # -- login ---------------------------------------------------------------

    @property
    def auth_roles_sync_at_login(self) -> bool:
        """auth_roles_sync_at_login is always true: decided roles replace old ones."""
        return True

    @property
    def auth_user_registration(self) -> bool:
        """auth_user_registration is always true: authzd decides who may enter."""
        return True

    @property
    def authzd_client(self) -> AuthzdClient:
        """authzd_client is the client this manager asks for decisions."""
        return self._authzd

    def _refuse(self, refusal: Refusal) -> None:
        g.authzd_refusal = refusal
        session.pop(SESSION_KEY, None)
        logger.warning(
            "authzd login refused: %s",
            refusal.title,
            extra={"decision_id": refusal.decision_id, "reason": refusal.code},
        )
        raise AuthzdLoginRefused(refusal)

    def oauth_user_info(self, provider: str, response: Optional[dict[str, Any]] = None) -> dict:
        """oauth_user_info asks authzd about the ID token of an OAuth login.

        It returns the user's username, email and names and the decided
        roles, and keeps the decision in the session. It raises, after
        recording a Refusal for the login view, when authzd says no, fails,
        is unreachable, or names a role that Superset does not have.
        """
        g.authzd_refusal = None
        session.pop(SESSION_KEY, None)
        id_token = (response or {}).get("id_token")
        if not isinstance(id_token, str) or not id_token:
            self._refuse(
                Refusal(
                    "The identity provider returned no ID token",
                    (f"provider {provider!r} must be an OpenID Connect provider "
                     "and the scopes must include 'openid'",),
                    code="NO_ID_TOKEN",
                )
            )
        try:
            decision = self._authzd.decide(
                id_token, context={"superset": {"event": "login", "oauth_provider": provider}}
            )
        except AuthzdError as exc:
            self._refuse(
                Refusal(
                    "authzd could not decide, so the sign-in is refused",
                    (exc.message,),
                    exc.decision_id,
                    exc.reason,
                )
            )
        return self._accept(provider, decision)

    def _accept(self, provider: str, decision: Decision) -> dict:
        if not decision.allowed:
            self._refuse(
                Refusal(
                    "authzd refused the sign-in",
                    decision.reasons or ("the policy did not allow this person",),
                    decision.decision_id,
                    "NOT_ALLOWED",
                )
            )
        if not decision.roles:
            self._refuse(
                Refusal(
                    "authzd allowed the sign-in but granted no Superset role",
                    decision.reasons,
                    decision.decision_id,
                    "NO_ROLES",
                )
            )
        missing = sorted({r for r in decision.roles if self.find_role(r) is None})
        if missing:
            logger.error(
                "authzd granted roles that do not exist in Superset: %s; create them",
                ", ".join(missing),
                extra={"decision_id": decision.decision_id},
            )
            self._refuse(
                Refusal(
                    "authzd granted Superset roles that do not exist",
                    tuple(
                        f"role {name!r} is named by the policy but missing in Superset: "
                        "an administrator must create it" for name in missing
                    ),
                    decision.decision_id,
                    "ROLE_MISSING",
                )
            )
        subject = decision.subject
        username = subject.username or subject.email or subject.subject
        if not username:
            self._refuse(
                Refusal(
                    "authzd's decision names no username",
                    ("the ID token has no email, preferred_username or sub",),
                    decision.decision_id,
                    "NO_USERNAME",
                )
            )
        state = {
            "id": decision.decision_id,
            "exp": decision.expires_at.timestamp(),
            "provider": provider,
            "user": username,
            "rev": decision.policy_revision,
            "filters": [f.to_list() for f in decision.rls_filters],
        }
        if not self._store_decision(username, state):
            self._refuse(
                Refusal(
                    "Superset cannot keep the authzd decision",
                    ("the metadata database's key-value store failed; see Superset's log",),
                    decision.decision_id,
                    "STORE_FAILED",
                )
            )
        # The session holds a reference only: filters can be long, and a
        # session cookie over 4 KB is dropped by browsers.
        session[SESSION_KEY] = {k: state[k] for k in ("id", "exp", "provider", "user")}
        logger.info(
            "authzd login allowed for %s with roles %s",
            username,
            ", ".join(decision.roles),
            extra={"decision_id": decision.decision_id},
        )
        return {
            "username": username,
            "email": subject.email,
            "first_name": subject.first_name,
            "last_name": subject.last_name,
            ROLES_KEY: list(decision.roles),
        }

    def _oauth_calculate_user_roles(self, userinfo: dict) -> list:
        """_oauth_calculate_user_roles returns the decided roles and nothing else.

        There is no AUTH_ROLES_MAPPING step and no registration role: a
        userinfo without decided roles gets none.
        """
        roles = []
        for name in userinfo.get(ROLES_KEY) or []:
            role = self.find_role(name)
            if role is not None:
                roles.append(role)
        return roles

    def auth_user_oauth(self, userinfo: dict) -> Any:
        """auth_user_oauth logs the user in, explaining when Superset says no."""
        user = super().auth_user_oauth(userinfo)
        if user is None and getattr(g, "authzd_refusal", None) is None:
            state = session.pop(SESSION_KEY, None) or {}
            g.authzd_refusal = Refusal(
                "Superset refused the sign-in",
                (f"user {userinfo.get('username')!r} is deactivated in Superset "
                 "or could not be created",),
                state.get("id", ""),
                "USER_INACTIVE",
            )
        return user

    # -- session lifetime ------------------------------------------------------

    def before_request(self) -> Any:  # type: ignore[override]
        """before_request signs out a person whose decision has expired.

        A browser is sent through the OAuth login again (silent at most
        identity providers); an API call gets 401.
        """
        super().before_request()
        return self._enforce_decision_lifetime()

    def _enforce_decision_lifetime(self) -> Any:
        if current_app.config.get("AUTH_TYPE") != AUTH_OAUTH:
            return None
        user = getattr(g, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        if self.is_guest_user(user) or request.path.startswith(_OPEN_PATHS):
            return None
        state = session.get(SESSION_KEY)
        if self._state_problem(state, getattr(user, "username", None)) is None:
            return None
        provider = (state or {}).get("provider") or self._first_provider()
        logger.info(
            "authzd decision expired or missing; signing out",
            extra={"decision_id": (state or {}).get("id", "")},
        )
        session.pop(SESSION_KEY, None)
        logout_user()
        g.user = None
        if request.path.startswith("/api/") or request.method != "GET" or request.is_json:
            body = jsonify(
                message="The authorization decision for this session has expired or is "
                "missing; sign in again",
                login_url=f"/login/{provider}" if provider else "/login/",
            )
            return make_response(body, 401)
        target = f"/login/{quote(provider, safe='')}" if provider else "/login/"
        return redirect(f"{target}?next={quote(request.full_path, safe='')}")

    def _first_provider(self) -> str:
        providers = current_app.config.get("OAUTH_PROVIDERS") or []
        return providers[0].get("name", "") if providers else ""

    @staticmethod
    def _state_problem(state: Any, username: Optional[str]) -> Optional[str]:
        """_state_problem says what is wrong with a session's decision, or None."""
        if not isinstance(state, dict) or "exp" not in state:
            return "this session holds no authzd decision; sign in again"
        if username is not None and state.get("user") != username:
            return "this session's authzd decision is for another user; sign in again"
        if time.time() >= float(state["exp"]):
            return (
                f"the authzd decision {state.get('id', '')} of this session has "
                "expired; sign in again"
            )
        return None

    # -- decision store ----------------------------------------------------------

    def _decision_store(self) -> Any:
        """_decision_store is where decisions are kept for contexts without a session.

        It is Superset's metastore cache (the key-value table of the metadata
        database), so every web worker and Celery worker sees the same
        decisions, and entries expire with the decision.
        """
        store = getattr(self, "_authzd_store", None)
        if store is None:
            from superset.extensions.metastore_cache import SupersetMetastoreCache
            from superset.key_value.types import JsonKeyValueCodec
            from superset.key_value.utils import get_uuid_namespace

            store = SupersetMetastoreCache(
                namespace=get_uuid_namespace("authzd-decisions"),
                codec=JsonKeyValueCodec(),
            )
            self._authzd_store = store
        return store

    def _store_decision(self, username: str, state: dict) -> bool:
        """_store_decision keeps a decision until it expires.

        It is stored under its id, for the session that logged in, and the
        user's latest decision id is stored under the username, for queries
        that run without the person's session.
        """
        ttl = max(1, int(state["exp"] - time.time()) + 1)
        try:
            store = self._decision_store()
            store.set(f"decision:{state['id']}", state, timeout=ttl)
            store.set(f"user:{username}", {"id": state["id"]}, timeout=ttl)
        except Exception:  # pylint: disable=broad-except
            logger.exception("cannot store the authzd decision for %s", username)
            return False
        return True

    def _stored(self, key: str) -> Optional[dict]:
        try:
            value = self._decision_store().get(key)
        except Exception:  # pylint: disable=broad-except
            logger.exception("cannot read the stored authzd decision %s", key)
            return None
        return value if isinstance(value, dict) else None

    def _current_decision(self, username: Optional[str]) -> dict:
        """_current_decision returns the decision that applies, or raises AuthzdNoDecision.

        It is the one the session refers to; without a session of this user
        (SQL Lab runs queries in a request context of its own, Celery workers
        have none), the user's latest.
        """
        ref = session.get(SESSION_KEY)
        if isinstance(ref, dict) and ref.get("user") == username and ref.get("id"):
            problem = self._state_problem(ref, username)
            if problem is not None:
                raise AuthzdNoDecision(problem)
            state = self._stored(f"decision:{ref['id']}")
        else:
            latest = self._stored(f"user:{username}") if username else None
            state = self._stored(f"decision:{latest['id']}") if latest else None
        problem = self._state_problem(state, username)
        if problem is not None:
            raise AuthzdNoDecision(problem)
        return state

    def forget_decision(self, username: str) -> None:
        """forget_decision drops the stored latest decision of a user."""
        try:
            store = self._decision_store()
            latest = store.get(f"user:{username}")
            if isinstance(latest, dict):
                store.delete(f"decision:{latest.get('id')}")
            store.delete(f"user:{username}")
        except Exception:  # pylint: disable=broad-except
            logger.exception("cannot delete the stored authzd decision for %s", username)

    # -- row-level security ----------------------------------------------------

    def get_rls_filters(self, table: Any) -> list:
        """get_rls_filters returns the person's filters for a dataset.

        They are the decision's filters whose tables match the dataset, plus
        any that Superset's own RLS rules add. The decision is the one the
        session refers to; where a query runs without the person's session
        (SQL Lab, Celery), it is the person's latest. The result is
        memoized per request. Without a valid decision it raises
        AuthzdNoDecision, so the query fails instead of running unfiltered.
        Guest (embedded) users keep Superset's own rules.
        """
        if self.is_guest_user():
            return super().get_rls_filters(table)
        user = getattr(g, "user", None) if has_request_context() else None
        if user is None or not getattr(user, "is_authenticated", False):
            raise AuthzdNoDecision(
                "row-level security needs an authzd decision, and only a signed-in "
                "person has one; the query is refused"
            )
        username = getattr(user, "username", None)
        memo: dict = getattr(g, "_authzd_rls", None) or {}
        key = (username, getattr(table, "id", None), id(table))
        if key not in memo:
            memo[key] = tuple(self._filters_for(table, username)) + tuple(
                super().get_rls_filters(table)
            )
            g._authzd_rls = memo
        return list(memo[key])

    def _filters_for(self, table: Any, username: Optional[str]) -> list[AuthzdRLSFilter]:
        state = self._current_decision(username)
        name = getattr(table, "table_name", None)
        database = getattr(table, "database", None)
        if not name or database is None:
            raise AuthzdNoDecision(
                f"cannot tell which table {table!r} is, so its row-level security "
                "is unknown; the query is refused"
            )
        try:
            filters = [RLSFilter.from_list(row) for row in state.get("filters", [])]
        except (TypeError, ValueError) as exc:
            raise AuthzdNoDecision(f"this session's authzd decision is unreadable: {exc}")
        try:
            picked = select_filters(
                filters,
                database=getattr(database, "database_name", "") or "",
                schema=getattr(table, "schema", None),
                table=name,
                backend=getattr(database, "backend", "") or "",
            )
        except FilterMismatch as exc:
            raise AuthzdNoDecision(str(exc)) from exc
        return [AuthzdRLSFilter(f.id, f.group_key or None, f.clause, f.name) for f in picked]
