"""Who echoes-ops connects as: the shared ``default`` user makes every operator the same
person to the server and to the audit trail (docs/team.md)."""

from __future__ import annotations

from redis.exceptions import ResponseError

from echoes_ops.operations.doctor.base import Context, Finding, found, refused

DEFAULT_USER = "default"
WHY = (
    "The audit trail records the Redis ACL user beside the name an operator declares, and "
    "the server's ACL is the only thing that enforces who may do what. Everyone connecting "
    "as the shared default user is the same person to both, with every permission."
)
FIX = (
    "create one ACL user per person with the role they need (`echoes-ops acl roles --role "
    "operator --user NAME --format setuser | redis-cli`, then a password), connect with "
    "REDIS_USERNAME, and turn the default user off (`ACL SETUSER default off`); see "
    "docs/team.md"
)


async def acl_user(ctx: Context) -> Finding:
    try:
        user = await ctx.r.acl_whoami()
    except ResponseError as exc:
        return found(
            "unknown", f"ACL WHOAMI {refused(exc)}", WHY, "grant +acl|whoami (every role has it)"
        )
    name = user.decode() if isinstance(user, bytes) else str(user)
    if name == DEFAULT_USER:
        return found("warn", "connected as the shared default user", WHY, FIX, user=name)
    return found("ok", f"connected as ACL user {name!r}", WHY, user=name)
