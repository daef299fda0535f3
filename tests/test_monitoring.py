"""docs/monitoring/: the alert rules and the Grafana dashboard use only metrics the exposition
emits, and the rules pass `promtool check rules` (promtool is installed by scripts/setup:
a missing promtool fails this test, it does not skip it)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.operations.metrics.domain import read_drift
from echoes_ops.operations.metrics.source import MetricsConfig, MetricsSource
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA, REPO

MONITORING = REPO / "docs" / "monitoring"
RULES = MONITORING / "echoes-redis.rules.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are neither functions, keywords,
    label names (inside {} or the lists of by/without/on/ignoring) nor inside strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text
    )  # label lists
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if word.lower() in KEYWORDS or following.startswith("("):
            continue
        if re.fullmatch(r"\d+(ms|s|m|h|d|w|y)", word) or re.fullmatch(r"e\d+", word):
            continue
        names.add(word)
    return names


def test_metric_names_parser():
    assert metric_names(
        'sum by (kind) (rate(echoes_redis_x_total{a="b c"}[5m])) / on(a) echoes_redis_y > 1e9'
    ) == {"echoes_redis_x_total", "echoes_redis_y"}
    assert metric_names("time() - echoes_redis_z > 300 and absent(echoes_redis_w)") == {
        "echoes_redis_z",
        "echoes_redis_w",
    }


def _rule_exprs() -> list[tuple[str, str]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [
        (rule.get("alert") or rule.get("record"), rule["expr"])
        for group in document["groups"]
        for rule in group["rules"]
    ]


def _dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = []

    def walk(panels: list[dict[str, object]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):  # type: ignore[attr-defined]
                out.append((str(panel["title"]), target["expr"]))
            walk(panel.get("panels", []))  # type: ignore[arg-type]

    walk(board["panels"])
    out += [(a["name"], a["expr"]) for a in board["annotations"]["list"] if "expr" in a]
    return out


@pytest.fixture
def emitted(redis_url: str, tmp_path: Path) -> set[str]:
    """Every metric name `metrics serve` emits, from a tier where every family has a reason
    to appear: preloaded gamedata, a warmup in the audit trail, a live worker, drift run."""
    env = {"REDIS_URL": redis_url}
    assert cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env).code == 0
    assert cli("warmup", "--what", "static", "--gamedata", str(BUNDLED_GAMEDATA), env=env).code == 0
    worker = redis.Redis.from_url(redis_url, decode_responses=True)
    worker.client_setname("w-monitoring")
    worker.hset(keys.worker_meta_key("w-monitoring"), mapping={"mode": "redis"})
    worker.hset(keys.session_key(7), mapping={"worker_id": "w-monitoring", "location_id": "x"})
    worker.set(keys.lock_key("job"), "w-monitoring#1", ex=60)
    env_file = tmp_path / "api.env"
    env_file.write_text("REDIS_ENABLED=true\n")
    config = MetricsConfig(
        target=Settings.from_dsn(redis_url).redis_target(),
        env_file=str(env_file),
        gamedata_dir=BUNDLED_GAMEDATA,
        interval=60,
    )
    source = MetricsSource(config)

    async def read() -> str:
        source.drift = await read_drift(config.target)
        return (await source.exposition()).text()

    text = asyncio.run(read())
    worker.close()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        names.update(sample.name for sample in family.samples)
    return names


def test_every_metric_of_the_rules_and_the_dashboard_is_emitted(emitted):
    used = {}
    for where, expr in _rule_exprs() + _dashboard_exprs():
        for name in metric_names(expr):
            used.setdefault(name, where)
    assert used, "no metric found in the rules and the dashboard"
    missing = {name: where for name, where in used.items() if name not in emitted}
    assert not missing, f"used but never emitted: {missing}"
    # the domain metrics the runbook alerts on are all covered by a rule
    alerted = set().union(*(metric_names(expr) for _, expr in _rule_exprs()))
    for name in (
        "echoes_redis_up",
        "echoes_redis_flag_sources_agree",
        "echoes_redis_workers_not_applied",
        "echoes_redis_locks_without_ttl",
        "echoes_redis_locks_dead_owner",
        "echoes_redis_drift",
        "echoes_redis_sessions_without_ttl",
        "echoes_redis_gamedata_current",
        "echoes_redis_warmup_last_result",
        "echoes_redis_workers_dead",
    ):
        assert name in alerted, f"no alert rule on {name}"


def test_rules_pass_promtool():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/setup (it installs Debian's prometheus)"
    out = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_rule_exprs())} rules found" in out.stdout


def test_every_alert_names_a_severity_and_a_runbook_section():
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    docs = REPO / "docs"
    for group in document["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            url = rule["annotations"]["runbook_url"]
            page, _, anchor = url.partition("#")
            text = (REPO / page).read_text(encoding="utf-8")
            headings = {
                re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                for line in text.splitlines()
                if line.startswith("#")
            }
            assert anchor in headings, (rule["alert"], url)
            assert (docs / Path(page).name).exists()


def test_dashboard_is_importable_grafana_json():
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["uid"]
    assert board["title"]
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
