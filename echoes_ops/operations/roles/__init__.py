"""Least-privilege roles: Redis ACL rules and PostgreSQL grants (``echoes-ops acl``)."""

from echoes_ops.operations.roles.postgres_grants import PG_ROLES, grant_script
from echoes_ops.operations.roles.redis_acl import FORBIDDEN, ROLES, RedisRole, redis_roles

__all__ = ["FORBIDDEN", "PG_ROLES", "ROLES", "RedisRole", "grant_script", "redis_roles"]
