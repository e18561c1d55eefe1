"""authzd_superset connects Apache Superset to authzd.

:class:`AuthzdSecurityManager` is a Superset security manager: at every
OAuth login it asks authzd for a decision about the person's ID token and
applies the decided roles, and it returns the decision's row-level security
filters to every query. :class:`AuthzdClient` is the HTTP client it uses.
"""

from .client import AuthzdClient, AuthzdError, Decision, RLSFilter, Subject

__all__ = [
    "AuthzdClient",
    "AuthzdError",
    "AuthzdSecurityManager",
    "Decision",
    "RLSFilter",
    "Subject",
]


def __getattr__(name: str):
    # The manager imports Superset; load it only when asked for, so that the
    # client works (and is tested) without initialising Superset.
    if name == "AuthzdSecurityManager":
        from .manager import AuthzdSecurityManager

        return AuthzdSecurityManager
    raise AttributeError(f"module 'authzd_superset' has no attribute {name!r}")
