"""Prepare a Superset metadata database for the end-to-end test.

Run after ``superset db upgrade`` and ``superset init``, with the same
configuration (SUPERSET_CONFIG_PATH). It registers the SQLite analytics
database and its ``sales`` dataset, creates the department roles the
shipped policy names (with access to ``sales`` and to SQL Lab), lets Alpha
use SQL Lab, and prints the ids the test needs as JSON.

    python setup_superset.py sqlite:////path/analytics.db
"""

from __future__ import annotations

import json
import sys

POLICY_ROLES = ["Dept Sales", "Dept Finance"]


def main(uri: str) -> None:
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from superset.connectors.sqla.models import SqlaTable
        from superset.extensions import db, security_manager as sm
        from superset.models.core import Database

        database = db.session.query(Database).filter_by(database_name="analytics").one_or_none()
        if database is None:
            database = Database(database_name="analytics", sqlalchemy_uri=uri)
        database.sqlalchemy_uri = uri
        database.expose_in_sqllab = True
        database.allow_run_async = False
        db.session.add(database)
        db.session.commit()

        table = (
            db.session.query(SqlaTable)
            .filter_by(table_name="sales", database_id=database.id)
            .one_or_none()
        )
        if table is None:
            # SQLite's default schema is "main": SQL Lab finds a dataset's
            # RLS only when the dataset names the schema the query runs in.
            table = SqlaTable(table_name="sales", schema="main", database=database)
            db.session.add(table)
            db.session.commit()
        table.fetch_metadata()
        db.session.commit()

        sm.add_permission_view_menu("datasource_access", table.get_perm())
        sm.add_permission_view_menu("schema_access", table.schema_perm)
        sales_access = sm.find_permission_view_menu("datasource_access", table.get_perm())
        sql_lab = sm.find_role("sql_lab")
        for name in POLICY_ROLES:
            role = sm.find_role(name) or sm.add_role(name)
            sm.add_permission_role(role, sales_access)
            for pvm in sql_lab.permissions:
                sm.add_permission_role(role, pvm)
        alpha = sm.find_role("Alpha")
        for pvm in sql_lab.permissions:
            sm.add_permission_role(alpha, pvm)
        db.session.commit()
        print(json.dumps({"database_id": database.id, "dataset_id": table.id}))


if __name__ == "__main__":
    main(sys.argv[1])
