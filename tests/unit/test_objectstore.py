"""The broker's disk: the S3 subset Tansu uses, conditional writes first (they order produces)."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest
from starlette.testclient import TestClient

from feedhouse.objectstore import PAGE, ObjectStore


@pytest.fixture
def store(tmp_path: Path) -> TestClient:
    return TestClient(ObjectStore(tmp_path))


def keys(response_text: str) -> tuple[list[str], str | None]:
    root = ElementTree.fromstring(response_text)
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    found = [node.text or "" for node in root.findall("s3:Contents/s3:Key", ns)]
    token = root.find("s3:NextContinuationToken", ns)
    return found, None if token is None else token.text


def test_put_get_head_delete(store: TestClient) -> None:
    put = store.put("/tansu/a/b.json", content=b'{"x":1}')
    assert put.status_code == 200
    etag = put.headers["etag"]
    got = store.get("/tansu/a/b.json")
    assert got.content == b'{"x":1}' and got.headers["etag"] == etag
    assert store.head("/tansu/a/b.json").headers["content-length"] == "7"
    assert store.delete("/tansu/a/b.json").status_code == 204
    assert store.get("/tansu/a/b.json").status_code == 404
    assert store.head("/tansu/a/b.json").status_code == 404


def test_conditional_writes_refuse_a_stale_etag_and_an_existing_object(store: TestClient) -> None:
    first = store.put("/tansu/w.json", content=b"1", headers={"If-None-Match": "*"})
    assert first.status_code == 200
    assert store.put("/tansu/w.json", content=b"2", headers={"If-None-Match": "*"}).status_code == 412
    second = store.put("/tansu/w.json", content=b"2", headers={"If-Match": first.headers["etag"]})
    assert second.status_code == 200 and second.headers["etag"] != first.headers["etag"]
    stale = store.put("/tansu/w.json", content=b"3", headers={"If-Match": first.headers["etag"]})
    assert stale.status_code == 412, "a write based on an old version must not win"
    assert store.put("/tansu/missing.json", content=b"x", headers={"If-Match": '"abc"'}).status_code == 412
    assert store.get("/tansu/w.json").content == b"2"


def test_listing_pages_in_key_order_under_a_prefix(store: TestClient) -> None:
    for offset in range(PAGE + 5):
        store.put(f"/tansu/p/0/records/{offset:020d}.batch", content=b"r")
    store.put("/tansu/p/1/records/00000000000000000000.batch", content=b"other partition")
    first = store.get("/tansu", params={"list-type": "2", "prefix": "p/0/records/"})
    page, token = keys(first.text)
    assert len(page) == PAGE and page == sorted(page) and token == page[-1]
    rest, end = keys(
        store.get("/tansu", params={"list-type": "2", "prefix": "p/0/", "continuation-token": token}).text
    )
    assert len(rest) == 5 and end is None and rest[0] > page[-1]
    assert keys(store.get("/tansu", params={"prefix": "p/1/"}).text)[0] == [
        "p/1/records/00000000000000000000.batch"
    ]


def test_ranges(store: TestClient) -> None:
    store.put("/tansu/r", content=b"0123456789")
    assert store.get("/tansu/r", headers={"Range": "bytes=2-4"}).content == b"234"
    assert store.get("/tansu/r", headers={"Range": "bytes=7-"}).content == b"789"
    assert store.get("/tansu/r", headers={"Range": "bytes=-2"}).content == b"89"


def test_everything_survives_a_restart_and_torn_writes_are_dropped(tmp_path: Path) -> None:
    before = TestClient(ObjectStore(tmp_path))
    etag = before.put("/tansu/k/v.json", content=b"kept").headers["etag"]
    (tmp_path / "tansu" / "k" / ".feedhouse-tmp-v2.json").write_bytes(b"half a write")
    after = TestClient(ObjectStore(tmp_path))
    assert after.get("/tansu/k/v.json").headers["etag"] == etag
    assert keys(after.get("/tansu", params={"prefix": "k/"}).text)[0] == ["k/v.json"]
    assert after.put("/tansu/k/v.json", content=b"new", headers={"If-Match": etag}).status_code == 200


def test_keys_cannot_leave_the_store(store: TestClient, tmp_path: Path) -> None:
    assert store.put("/tansu/a/%2E%2E/%2E%2E/x", content=b"x").status_code == 400
    assert not (tmp_path.parent / "x").exists()
    assert store.get("/Bad_Bucket/x").status_code == 400
