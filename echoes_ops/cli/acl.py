"""``acl roles|postgres``: least-privilege Redis ACL rules and PostgreSQL grants to apply."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from echoes_ops.cli.common import emit_json, fail
from echoes_ops.cli.options import JsonOption
from echoes_ops.errors import ExitCode

app = typer.Typer(
    help="Least-privilege roles: Redis ACL rules and PostgreSQL grants (docs/team.md).",
    no_args_is_help=True,
)
ROLE_NAMES = ("reader", "operator", "warmup", "worker")
FORMATS = ("both", "aclfile", "setuser")


@app.command("roles")
def roles(
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            metavar="NAME",
            help=f"Only this role: {', '.join(ROLE_NAMES)}.",
            show_default=False,
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            metavar="USER",
            help="ACL user name to write the rules for (with --role; default echoes-<role>).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="F",
            help="both (commented), aclfile (user lines for an ACL file) or setuser "
            "(ACL SETUSER lines to pipe into redis-cli).",
        ),
    ] = "both",
    json: JsonOption = False,
) -> None:
    """Print the Redis ACL rules of the tier's roles: reader (every inspection command, the
    dashboard read-only), operator (plus broadcasts, locks, kicks, reconcile --fix, cleanup,
    invalidate, preload, warmup, flags), warmup (warmup from cron) and worker (the reference
    game worker). None is given FLUSHALL, KEYS, CONFIG, DEBUG or ACL administration.

    The rules carry no password: a new user cannot log in until one is added (ACL SETUSER
    USER >password, or #<sha256> in an ACL file); re-applying ACL SETUSER keeps an existing
    user's passwords. Redis ACLs have no groups: give each person their own user with
    --user. Needs Redis 7.0 or newer. See docs/team.md.

    \b
    Examples:
      echoes-ops acl roles
      echoes-ops acl roles --role operator --user alice --format setuser | redis-cli
      echoes-ops acl roles --format aclfile >> /etc/redis/users.acl
      echoes-ops acl roles --role reader --json
    """
    from echoes_ops.operations.roles import redis_roles

    if role is not None and role not in ROLE_NAMES:
        fail(f"unknown role {role!r}: expected one of {', '.join(ROLE_NAMES)}", ExitCode.USAGE)
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}: expected one of {', '.join(FORMATS)}", ExitCode.USAGE)
    if user is not None and role is None:
        fail("--user names the account of one role: give --role too", ExitCode.USAGE)
    from echoes_ops.errors import InvalidIdError

    selected = redis_roles(role)
    try:
        if json:
            emit_json({"roles": [r.as_dict(user) for r in selected]})
            return
        lines: list[str] = []
        for r in selected:
            if fmt == "both":
                lines += [f"# role {r.name}: {r.summary}", "# ACL file line:"]
            if fmt in ("both", "aclfile"):
                lines.append(r.aclfile_line(user))
            if fmt == "both":
                lines.append("# at runtime (keeps the user's passwords):")
            if fmt in ("both", "setuser"):
                lines.append(r.setuser_line(user))
            if fmt == "both":
                lines.append("")
    except InvalidIdError as exc:
        fail(str(exc), ExitCode.USAGE)
    sys.stdout.write("\n".join(lines).rstrip("\n") + "\n")


@app.command("postgres")
def postgres(json: JsonOption = False) -> None:
    """Print the PostgreSQL GRANT script for the echoes_ops schema: group roles
    echoes_ops_reader (read flags and the audit trail), echoes_ops_operator (plus appending
    audit records and setting flags; never UPDATE or DELETE of audit rows) and
    echoes_ops_warmup (reader plus appending audit records). Idempotent; run it as the
    schema's owner after db migrate, then make each person's login role a member.

    \b
    Examples:
      echoes-ops acl postgres | psql -v ON_ERROR_STOP=1 "$DATABASE_URL"
      echoes-ops acl postgres --json
    """
    from echoes_ops.operations.roles import PG_ROLES, grant_script

    if json:
        emit_json({"roles": list(PG_ROLES), "script": grant_script()})
        return
    sys.stdout.write(grant_script())
