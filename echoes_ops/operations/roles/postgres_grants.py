"""PostgreSQL roles over the ``echoes_ops`` schema (flags and audit tables).

Three group roles (``NOLOGIN``); each person's or service's login role is made a member
(``GRANT echoes_ops_operator TO alice``), so the audit trail's PostgreSQL session user is a
person, not a shared account:

- ``echoes_ops_reader``: read the flags and the audit trail (``audit``, ``flags list/get/
  status``, doctor, the dashboard; a game worker reading ``REDIS_ENABLED``).
- ``echoes_ops_operator``: the reader's, plus appending audit records and setting flags.
  The audit table is append-only for it: no ``UPDATE`` or ``DELETE``.
- ``echoes_ops_warmup``: the reader's, plus appending audit records (``warmup`` from cron).

The script is idempotent and runs after ``echoes-ops db migrate`` (the tables must exist),
as a role that may create roles and grant on the schema (a superuser, or the schema's
owner with ``CREATEROLE``). It grants nothing on the game's own tables: ``warmup`` also needs
``SELECT`` on the tables its queries read, which the deployment grants.
"""

from __future__ import annotations

from typing import Final

from echoes_ops.operations.migrations import SCHEMA

READER_ROLE: Final = f"{SCHEMA}_reader"
OPERATOR_ROLE: Final = f"{SCHEMA}_operator"
WARMUP_ROLE: Final = f"{SCHEMA}_warmup"
PG_ROLES: Final = (READER_ROLE, OPERATOR_ROLE, WARMUP_ROLE)
AUDIT_TABLE: Final = f"{SCHEMA}.audit"
FLAGS_TABLE: Final = f"{SCHEMA}.flags"


def _create_role(name: str) -> str:
    return (
        f"  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{name}') THEN\n"
        f"    CREATE ROLE {name} NOLOGIN;\n"
        "  END IF;\n"
    )


def grant_script() -> str:
    """The GRANT script (SQL), for ``psql -v ON_ERROR_STOP=1 -f`` or one ``execute``."""
    roles = ", ".join(PG_ROLES)
    return (
        f"-- echoes-ops PostgreSQL roles over the {SCHEMA} schema. Run after `echoes-ops db\n"
        "-- migrate`, as a superuser (or the schema's owner with CREATEROLE). Idempotent.\n"
        "-- Give a person a role with:\n"
        f"--   CREATE ROLE alice LOGIN PASSWORD '...'; GRANT {OPERATOR_ROLE} TO alice;\n"
        "DO $$\nBEGIN\n" + "".join(_create_role(name) for name in PG_ROLES) + "END $$;\n"
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {SCHEMA} FROM {roles};\n"
        f"GRANT USAGE ON SCHEMA {SCHEMA} TO {roles};\n"
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {roles};\n"
        "-- tables a later migration adds (created by the schema's owner) are readable too\n"
        "DO $$\nBEGIN\n"
        "  EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA "
        f"{SCHEMA} GRANT SELECT ON TABLES TO {roles}',\n"
        f"    (SELECT pg_catalog.pg_get_userbyid(nspowner) FROM pg_catalog.pg_namespace WHERE nspname = '{SCHEMA}'));\n"
        "END $$;\n"
        "-- append-only audit trail: INSERT, never UPDATE or DELETE\n"
        f"GRANT INSERT ON {AUDIT_TABLE} TO {OPERATOR_ROLE}, {WARMUP_ROLE};\n"
        f"GRANT USAGE ON SEQUENCE {AUDIT_TABLE}_id_seq TO {OPERATOR_ROLE}, {WARMUP_ROLE};\n"
        "-- flags set: INSERT ... ON CONFLICT DO UPDATE, after SELECT ... FOR UPDATE\n"
        f"GRANT INSERT, UPDATE ON {FLAGS_TABLE} TO {OPERATOR_ROLE};\n"
    )
