"""README.md stays true: its configuration table is the settings module's, and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from feedhouse.cli import build_parser
from feedhouse.settings import env_table

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_configuration_table_matches_the_settings_module() -> None:
    table = README.split("<!-- env-table:start -->")[1].split("<!-- env-table:end -->")[0].strip()
    assert table == env_table()


def test_every_documented_command_exists() -> None:
    commands = set(re.findall(r"`feedhouse (\w+)", README)) | {"gateway", "worker", "sink", "migrate", "dev"}
    parser = build_parser()
    for command in commands:
        assert callable(parser.parse_args([command]).run), command
