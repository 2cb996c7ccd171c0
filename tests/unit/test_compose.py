"""docker-compose.yml parses, and every Feedhouse service is configured only with settings we read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from feedhouse import settings as settings_module
from feedhouse.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def feedhouse_services() -> dict[str, dict[str, Any]]:
    services = compose()["services"].items()
    return {name: s for name, s in services if s.get("image", "").startswith("feedhouse")}


def test_compose_has_the_whole_product() -> None:
    services = compose()["services"]
    assert {"clickhouse", "gateway", "worker", "sink", "migrate"} <= set(services)
    assert sum(1 for s in services.values() if s.get("image", "").startswith("apache/kafka")) == 3
    assert (ROOT / "Dockerfile").exists()


def test_every_feedhouse_setting_in_compose_is_one_the_code_reads() -> None:
    known = set(settings_module.ENV)
    for name, service in feedhouse_services().items():
        unknown = set(service["environment"]) - known
        assert not unknown, f"{name} sets variables Feedhouse does not read: {unknown}"
        # The values must also be valid: the settings loader accepts them.
        settings_module.load({key: str(value) for key, value in service["environment"].items()})


def test_every_feedhouse_command_in_compose_exists() -> None:
    parser = build_parser()
    for service in feedhouse_services().values():
        args = parser.parse_args(service["command"])
        assert callable(args.run)


def test_compose_kafka_replication_matches_feedhouse_settings() -> None:
    gateway_env = feedhouse_services()["gateway"]["environment"]
    assert gateway_env["FEEDHOUSE_REPLICATION_FACTOR"] == "3"
    assert len(gateway_env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == 3
