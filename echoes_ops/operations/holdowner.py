"""Who took an operator hold, as authenticated, and whether the caller is that person:
a release or extend without the hold's token needs it (the declared ``--operator`` name is
a label anyone can give). See docs/team.md."""

from __future__ import annotations

from echoes_ops.operations.identity import SHARED_REDIS_USER, Identity


def taker_fields(who: Identity) -> dict[str, str]:
    """What a hold records about who took it (beside the declared ``operator``)."""
    return {
        "os_user": who.os_user,
        "sudo_user": who.sudo_user or "",
        "host": who.host,
        "redis_user": who.redis_user or "",
    }


def took_it(hold: dict[str, str] | None, who: Identity) -> bool:
    """Whether ``who`` is, as authenticated, the one who took ``hold`` (the lock's hold info,
    read only while it names the lock's current value): the same OS user (and sudo user) on
    the same host, or the same Redis ACL user unless that user is the shared ``default``
    one (everyone's). A hold that recorded no identity (an older echoes-ops) matches no
    one: its token or --force it is."""
    if not hold:
        return False
    same_os = bool(hold.get("os_user")) and (
        hold.get("os_user"),
        hold.get("sudo_user", ""),
        hold.get("host"),
    ) == (who.os_user, who.sudo_user or "", who.host)
    acl = hold.get("redis_user", "")
    same_acl = bool(acl) and acl != SHARED_REDIS_USER and acl == who.redis_user
    return same_os or same_acl


def taker_text(hold: dict[str, str] | None) -> str:
    """Who took a hold, in words ("nobody recorded" for an older hold)."""
    if not hold or not hold.get("os_user"):
        return "an identity it did not record"
    sudo = f" (sudo {hold['sudo_user']})" if hold.get("sudo_user") else ""
    acl = f", Redis user {hold['redis_user']}" if hold.get("redis_user") else ""
    return f"OS user {hold['os_user']}{sudo} on {hold.get('host', '?')}{acl}"


def me_text(who: Identity) -> str:
    sudo = f" (sudo {who.sudo_user})" if who.sudo_user else ""
    acl = f", Redis user {who.redis_user}" if who.redis_user else ""
    return f"OS user {who.os_user}{sudo} on {who.host}{acl}"
