"""Superset configuration of authzd's tests and end-to-end harness.

Every setting that differs between runs comes from the environment, set by
the harness: AUTHZD_TEST_HOME (a scratch directory), AUTHZD_URL (the
decision service), AUTHZD_IDP_ISSUER (the OIDC issuer Superset logs in with).
It is also a worked example of the few lines a deployment needs.
"""

import os

from flask_appbuilder.const import AUTH_OAUTH

from authzd_superset import AuthzdSecurityManager

_home = os.environ["AUTHZD_TEST_HOME"]

SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY", "authzd-e2e-not-a-real-secret-0123456789")
SQLALCHEMY_DATABASE_URI = f"sqlite:///{_home}/superset.db"
DATA_DIR = _home
WTF_CSRF_ENABLED = False
TALISMAN_ENABLED = False
PREVENT_UNSAFE_DB_CONNECTIONS = False
SQLLAB_ASYNC_TIME_LIMIT_SEC = 60
FEATURE_FLAGS = {
    # Jinja templating of SQL, and so of RLS clauses: the hostile case.
    "ENABLE_TEMPLATE_PROCESSING": True,
    # Without it SQL Lab reads governed tables unfiltered.
    "RLS_IN_SQLLAB": True,
}

# -- authzd -------------------------------------------------------------------
CUSTOM_SECURITY_MANAGER = AuthzdSecurityManager
AUTHZD_URL = os.environ["AUTHZD_URL"]
AUTHZD_TIMEOUT = (2, 5)

AUTH_TYPE = AUTH_OAUTH
OAUTH_PROVIDERS = [
    {
        "name": "authzd",
        "icon": "fa-key",
        "token_key": "access_token",
        "remote_app": {
            "client_id": "superset",
            "client_secret": "dev-secret",
            "server_metadata_url": os.environ["AUTHZD_IDP_ISSUER"]
            + "/.well-known/openid-configuration",
            "client_kwargs": {"scope": "openid email profile"},
        },
    }
]
