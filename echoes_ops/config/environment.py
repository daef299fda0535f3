"""The environment's name (ECHOES_OPS_ENVIRONMENT): what a name may be, whether it says
production, and a confirmation's question saying where it acts."""

from __future__ import annotations

import re

from echoes_ops.errors import ConfigError

ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_PRODUCTION = re.compile(r"(?:^|[^a-z])(?:prod|production|prd|live)(?:$|[^a-z])", re.IGNORECASE)


def looks_like_production(environment: str | None) -> bool:
    """Whether an environment's name says production (``prod``, ``production``,
    ``eu-prod``, ``live``...): shown in red wherever it appears."""
    return bool(environment) and _PRODUCTION.search(environment or "") is not None


def on_environment(question: str, environment: str | None) -> str:
    """``question`` saying where it acts: ``Kick player 42?`` on ``prod`` becomes
    ``Kick player 42 on prod?`` (unchanged when no environment is named)."""
    if not environment:
        return question
    body = question[:-1] if question.endswith("?") else question
    return f"{body} on {environment}?"


def check_environment(environment: str | None) -> None:
    """ConfigError unless ``environment`` is absent or a short name."""
    if environment is not None and not ENVIRONMENT_NAME.fullmatch(environment):
        raise ConfigError(
            "ECHOES_OPS_ENVIRONMENT must be a short name (letters, digits, '-', '_', '.'; "
            f"at most 32), got {environment!r}"
        )
