"""The embedded broker's disk: the subset of the S3 API that Tansu's ``s3://`` storage uses.

Tansu 0.6 (the broker ``feedhouse dev`` runs) keeps topics in memory or in an S3-compatible
object store; its build has no other durable engine. This module serves an object store on the
local filesystem so the embedded stack keeps its data across restarts. Why not a packaged S3
server: the npm ``s3rver`` (filesystem-backed) ignores conditional PUTs, and Tansu relies on
them (``If-Match`` on a partition's watermark) to order concurrent produce requests: measured,
four concurrent producers to one partition kept 10,000 of 40,000 acknowledged records. moto
keeps nothing on disk. So: a small, exact implementation (docs/operations.md, "Persistence").

What it implements: ``PUT`` (with ``If-Match: <etag>`` and ``If-None-Match: *``, answering
412 when they fail), ``GET``/``HEAD`` (with ``Range``), ``DELETE``, and ``ListObjectsV2``
(``prefix``, ``start-after``, ``continuation-token``, 1,000 keys per page). Writes go to a
temporary file renamed over the object, so a killed process never leaves a torn object; the
key index and ETags live in memory, rebuilt from the files at start. It listens on loopback
only and does not check request signatures: it is a private disk, not a public service.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PAGE = 1000
_TMP = ".feedhouse-tmp-"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_LAST_MODIFIED = "Thu, 01 Jan 2026 00:00:00 GMT"  # Tansu never reads it; S3 clients need one


def etag_of(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


class Bucket:
    """One bucket: a directory of objects, with a sorted in-memory index per directory.

    Tansu keeps a few directories with many objects each (a partition's record batches), and
    lists one of them on every fetch: listing is a slice of a sorted list, not a directory walk.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.dirs: dict[str, list[str]] = {}  # "a/b/" -> sorted object names
        self.meta: dict[str, tuple[str, int]] = {}  # key -> (etag, size)
        root.mkdir(parents=True, exist_ok=True)
        for dirpath, _, files in os.walk(root):
            relative = os.path.relpath(dirpath, root)
            directory = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            for name in files:
                path = Path(dirpath) / name
                if name.startswith(_TMP):
                    path.unlink(missing_ok=True)  # a write interrupted before its rename
                    continue
                self._index(directory + name, etag_of(path.read_bytes()), path.stat().st_size)

    def _index(self, key: str, etag: str, size: int) -> None:
        directory, name = _split(key)
        if key not in self.meta:
            bisect.insort(self.dirs.setdefault(directory, []), name)
        self.meta[key] = (etag, size)

    def put(self, key: str, data: bytes, if_match: str | None, if_none_match: str | None) -> str | None:
        """Store ``data``; the new ETag, or None when a precondition failed."""
        with self.lock:
            current = self.meta.get(key)
            if if_match is not None and (current is None or if_match.strip().strip('"') != current[0]):
                return None
            if if_none_match is not None and if_none_match.strip() == "*" and current is not None:
                return None
            path = self.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f"{_TMP}{path.name}")
            temporary.write_bytes(data)
            os.replace(temporary, path)
            etag = etag_of(data)
            self._index(key, etag, len(data))
            return etag

    def get(self, key: str) -> tuple[str, bytes] | None:
        with self.lock:
            current = self.meta.get(key)
            if current is None:
                return None
            return current[0], (self.root / key).read_bytes()

    def head(self, key: str) -> tuple[str, int] | None:
        with self.lock:
            return self.meta.get(key)

    def delete(self, key: str) -> None:
        with self.lock:
            if self.meta.pop(key, None) is None:
                return
            (self.root / key).unlink(missing_ok=True)
            directory, name = _split(key)
            names = self.dirs[directory]
            del names[bisect.bisect_left(names, name)]

    def keys(self, prefix: str, after: str) -> list[tuple[str, str, int]]:
        """Up to one page plus one of (key, etag, size) under ``prefix``, after ``after``, sorted."""
        with self.lock:
            found: list[str] = []
            for directory, names in self.dirs.items():
                if directory.startswith(prefix):
                    found += [directory + name for name in names]
                elif prefix.startswith(directory):
                    start = bisect.bisect_left(names, prefix[len(directory) :])
                    for name in names[start:]:
                        if not (directory + name).startswith(prefix):
                            break
                        found.append(directory + name)
            found.sort()
            if after:
                found = found[bisect.bisect_right(found, after) :]
            return [(key, *self.meta[key]) for key in found[: PAGE + 1]]


def _split(key: str) -> tuple[str, str]:
    directory, _, name = key.rpartition("/")
    return (directory + "/" if directory else ""), name


class ObjectStore:
    """The ASGI application: ``/<bucket>`` lists, ``/<bucket>/<key>`` is an object."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def bucket(self, name: str) -> Bucket:
        with self._lock:
            found = self.buckets.get(name)
            if found is None:
                if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,62}", name):
                    raise ValueError(f"bad bucket name {name!r}")
                found = self.buckets[name] = Bucket(self.root / name)
            return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = unquote(scope["path"]).lstrip("/")
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        bucket_name, _, key = path.partition("/")
        method = scope["method"]
        try:
            bucket = self.bucket(bucket_name)
        except ValueError:
            await _respond(send, 400, _error("InvalidBucketName"))
            return
        if not key:
            if method != "GET":
                await _respond(send, 405, _error("MethodNotAllowed"))
                return
            query = {name: values[0] for name, values in parse_qs(scope["query_string"].decode()).items()}
            await _respond(send, 200, _listing(bucket_name, bucket, query), "application/xml")
            return
        if ".." in key.split("/") or key.startswith("/"):
            await _respond(send, 400, _error("InvalidKey"))
            return
        if method == "PUT":
            body = await _body(receive)
            # Inline, not in a thread: objects are small and land in the page cache; a thread hop
            # per request cost more than the write (python -m bench.persistence).
            etag = bucket.put(key, body, headers.get("if-match"), headers.get("if-none-match"))
            if etag is None:
                await _respond(send, 412, _error("PreconditionFailed"))
            else:
                await _respond(send, 200, b"", extra={"etag": f'"{etag}"'})
        elif method == "DELETE":
            bucket.delete(key)
            await _respond(send, 204, b"")
        elif method == "HEAD":
            meta = bucket.head(key)
            if meta is None:
                await _respond(send, 404, b"")
            else:
                await _respond(send, 200, b"", extra={"etag": f'"{meta[0]}"', "content-length": str(meta[1])})
        elif method == "GET":
            found = bucket.get(key)
            if found is None:
                await _respond(send, 404, _error("NoSuchKey"))
                return
            etag, data = found
            status, data = _ranged(data, headers.get("range"))
            await _respond(send, status, data, "application/octet-stream", {"etag": f'"{etag}"'})
        else:
            await _respond(send, 405, _error("MethodNotAllowed"))


def _ranged(data: bytes, header: str | None) -> tuple[int, bytes]:
    match = _RANGE.match(header or "")
    if match is None:
        return 200, data
    start, end = match.groups()
    if start == "":
        return 206, data[-int(end) :] if end else data
    stop = int(end) + 1 if end else len(data)
    return 206, data[int(start) : stop]


def _listing(name: str, bucket: Bucket, query: dict[str, str]) -> bytes:
    prefix = query.get("prefix", "")
    after = query.get("continuation-token") or query.get("start-after") or ""
    found = bucket.keys(prefix, after)
    page, truncated = found[:PAGE], len(found) > PAGE
    items = "".join(
        f"<Contents><Key>{escape(key)}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>"
        f"<ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
        for key, etag, size in page
    )
    token = f"<NextContinuationToken>{escape(page[-1][0])}</NextContinuationToken>" if truncated else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Name>{escape(name)}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(page)}</KeyCount>"
        f"<MaxKeys>{PAGE}</MaxKeys><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
        f"{token}{items}</ListBucketResult>"
    ).encode()


def _error(code: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code></Error>'.encode()


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "application/xml",
    extra: dict[str, str] | None = None,
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"last-modified", _LAST_MODIFIED.encode())]
    fields = dict(extra or {})
    if "content-length" not in fields:
        fields["content-length"] = str(len(body))
    headers += [(key.encode(), value.encode()) for key, value in fields.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Feedhouse's local object store (the embedded broker's disk)"
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(
        ObjectStore(args.directory.resolve()),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
