"""The wheel installs one import name, ``feedhouse``, and lives beside Apache's ``avro``."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

CHECK = """
import sys, avro, avro.schema, feedhouse, feedhouse.avro.codec
from feedhouse.audiences.evaluator import Evaluator
from feedhouse.avro.codec import AvroCodec
from feedhouse.clickhouse.migrate import discover
from feedhouse.gateway.ingest import Ingestor
from feedhouse.read.api import read_routes
from feedhouse.app.routes import app_routes
from feedhouse.app.templates import HERE, build_templates
from feedhouse.sink.consumer import Sink
from feedhouse.streams.router import Router

venv = sys.argv[1]
assert avro.__file__.startswith(venv), avro.__file__
assert feedhouse.__file__.startswith(venv), feedhouse.__file__
apache = avro.schema.parse('{"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}')
assert apache.name == "R"
codec = AvroCodec("rejected")
record = {"code": "c", "message": "m", "receivedAt": 1, "path": "/v1/t", "index": None,
          "sourceId": None, "payload": "{}"}
assert codec.decode(codec.encode(record)) == record
assert HERE.is_relative_to(venv), HERE
for name in ("base.html", "person.html", "_events.html"):
    build_templates().get_template(name)
assert (HERE / "static" / "app.js").is_file() and (HERE / "static" / "app.css").is_file()
print(len(discover()), codec.version)
"""


def test_wheel_installs_only_feedhouse_next_to_apache_avro(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("feedhouse-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"feedhouse"}, f"the wheel installs {sorted(top_level)}, expected only feedhouse"
    for data in (
        "feedhouse/avro/schemas/event.v1.avsc",
        "feedhouse/clickhouse/migrations/0001_events.sql",
        "feedhouse/app/templates/base.html",
        "feedhouse/app/templates/_events.html",
        "feedhouse/app/static/app.js",
        "feedhouse/app/static/app.css",
        "feedhouse/app/static/favicon.svg",
    ):
        assert data in names, f"{data} missing from the wheel"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "avro", str(wheel)], check=True, cwd=tmp_path
    )
    # Feedhouse's own dependencies come from the test environment, *after* the fresh venv's
    # site-packages, so `avro` and `feedhouse` resolve to what was just installed.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run(
        [str(python), "-c", CHECK, str(venv)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"imports failed in the fresh venv:\n{result.stderr}"
    migrations, version = result.stdout.split()
    assert int(migrations) >= 6 and int(version) >= 1
