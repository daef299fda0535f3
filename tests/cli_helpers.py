"""Running the CLI in-process and checking its error contract."""

from __future__ import annotations

from dataclasses import dataclass

from typer.testing import CliRunner

from echoes_ops.cli.main import app
from tests.cluster_coverage import recording


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def one_error_line(self) -> str:
        """The single stderr line of a failed command (no traceback, nothing else)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one stderr line, got: {self.stderr!r}"
        assert "Traceback" not in self.stderr + self.stdout
        assert lines[0].startswith("echoes-ops: error: "), lines[0]
        return lines[0]


def cli(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Outcome:
    with recording(args):
        result = CliRunner().invoke(app, list(args), env=env, input=input, catch_exceptions=False)
    return Outcome(result.exit_code, result.stdout, result.stderr)
