"""REDIS_ENABLED agreement: a verdict over :func:`echoes_ops.operations.flags.flag_status`,
the same reading ``flags status`` prints and the dashboard shows."""

from __future__ import annotations

from echoes_ops.operations.doctor.base import Context, Finding, found
from echoes_ops.operations.flags import LazyRedis, flag_status
from echoes_ops.operations.flags.status import FAIL, WARN

WHY = (
    "REDIS_ENABLED decides whether workers use Redis or fall back to PostgreSQL and "
    "in-process connections. PostgreSQL holds the switch, the env file keeps it across "
    "restarts and Redis mirrors it: when they disagree, a restart flips workers to "
    "another mode, and workers in different modes split the game (players on one side "
    "do not see the other)."
)
FIX = (
    "set it once through the source of truth (`echoes-ops flags set REDIS_ENABLED ...`, "
    "which updates PostgreSQL, the env file and the mirror), then restart or notify the "
    "workers that did not switch; `echoes-ops flags status` shows every source and worker"
)


async def redis_enabled(ctx: Context) -> Finding:
    st = await flag_status(
        ctx.database_url, env_file=ctx.env_file, redis=LazyRedis.of(ctx.r), liveness=ctx.liveness
    )
    details = st.as_dict()
    states = ", ".join(f"{s.source} {s.effective or s.state}" for s in st.sources)
    shown = f"({states}; {st.modes_line})"
    if st.severity == FAIL:
        return found("fail", f"{st.problems[0]} {shown}", WHY, FIX, **details)
    if st.severity == WARN:
        return found("warn", f"{'; '.join(st.problems)} {shown}", WHY, FIX, **details)
    known = [s for s in st.sources if s.effective is not None]
    if len(known) + (1 if st.workers else 0) < 2:
        return found("ok", f"nothing to compare {shown}", WHY, **details)
    value = known[0].effective if known else st.workers[0].redis_enabled
    return found("ok", f"all agree: {st.name}={value} {shown}", WHY, **details)
