"""Segment HTTP Tracking API and the Webhooks destination: requests in, Avro records to Kafka.

Every accepted event is published to the events topic; every refused one to the rejected topic
with its reason. The client gets 200 only once Kafka acknowledged all of them, 503 with
``Retry-After`` when it did not in time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson
from starlette.requests import Request
from starlette.responses import Response

from feedhouse import metrics
from feedhouse.avro.codec import AvroCodec
from feedhouse.gateway.auth import KeyRing, basic_user, unauthorized, verify_signature
from feedhouse.gateway.body import check_content_type, parse_json, read_body, read_json_object
from feedhouse.gateway.normalize import NO_DEFAULTS, BatchDefaults, Rejection, normalize
from feedhouse.gateway.publisher import KafkaUnavailable, Publisher, Record
from feedhouse.http import HttpError, json_response
from feedhouse.ids import person_key
from feedhouse.privacy.log import RegulationLog
from feedhouse.privacy.regulations import parse_request
from feedhouse.privacy.suppressions import SuppressionList
from feedhouse.settings import Settings

log = logging.getLogger(__name__)

# Segment's webhook deliveries (Actions) batch up to 4,000 events.
WEBHOOK_MAX_EVENTS = 4000
RETRY_AFTER_SECONDS = "5"


class Prepared(NamedTuple):
    """A batch item that passed validation, before the suppression check and encoding."""

    position: int  # in the batch
    item: Any
    source: str
    record: dict[str, Any]


def partition_key(record: dict[str, Any], placeholders: frozenset[str]) -> bytes:
    """Kafka key of an event: its person key (real userId, else real anonymousId).

    All events of one identified person share a partition, and so do all events of one
    anonymous device. Events carrying only placeholder ids are spread by messageId.
    """
    return (person_key(record["userId"], record["anonymousId"], placeholders) or record["messageId"]).encode()


def now_micros() -> int:
    return time.time_ns() // 1000


class Ingestor:
    """Turns authenticated requests into published records. One per gateway process."""

    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        suppressions: SuppressionList | None = None,
        regulations: RegulationLog | None = None,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.suppressions = suppressions
        self.regulations = regulations
        self.events = AvroCodec("event")
        self.rejected = AvroCodec("rejected")
        self.write_keys = KeyRing(settings.write_keys)
        self.webhook_keys = KeyRing(settings.webhook_api_keys)
        self.events_topic = settings.topic("events")
        self.rejected_topic = settings.topic("rejected")
        self._source_ids: dict[str, str] = {}
        self.max_future_micros = int(settings.max_future_seconds * 1_000_000)

    def source_id(self, write_key: str) -> str:
        cached = self._source_ids.get(write_key)
        if cached is None:
            cached = self._source_ids[write_key] = self.settings.source_id(write_key)
        return cached

    # -- building records ------------------------------------------------------------------

    def _suppression_list(self) -> SuppressionList | None:
        """The list to check events against, None when there is none to check."""
        suppressions = self.suppressions
        if suppressions is None:
            return None
        if not suppressions.table.loaded.is_set():
            # Accepting events before the list is known could let a suppressed person through.
            raise HttpError(
                503, "starting", "the suppression list is still loading, retry shortly", {"Retry-After": "1"}
            )
        return suppressions if suppressions.ids else None

    def _suppressed(self, record: dict[str, Any]) -> bool:
        """Suppressed people's events are dropped, not stored, not rejected (privacy/)."""
        suppressions = self._suppression_list()
        if suppressions is None or not suppressions.suppressed(record["userId"], record["anonymousId"]):
            return False
        metrics.EVENTS_SUPPRESSED.inc()
        return True

    def _without_suppressed(self, prepared: list[Prepared]) -> list[Prepared]:
        """``prepared`` without suppressed people's events. The whole batch is checked at once,
        in C (``isdisjoint``), and record by record only when it holds a suppressed id: one
        Python-level check per event, against 100,000 ids, cost a few per cent of the
        gateway's throughput (``bench.privacy``)."""
        suppressions = self._suppression_list()
        if suppressions is None or not prepared:
            return prepared
        ids = suppressions.ids
        if ids.isdisjoint([p.record["userId"] for p in prepared]) and ids.isdisjoint(
            [p.record["anonymousId"] for p in prepared]
        ):
            return prepared
        kept = [
            p for p in prepared if not suppressions.suppressed(p.record["userId"], p.record["anonymousId"])
        ]
        metrics.EVENTS_SUPPRESSED.inc(len(prepared) - len(kept))
        return kept

    def _accepted(self, record: dict[str, Any]) -> Record:
        """The Kafka record of an event, or a Rejection when it is larger than Segment allows.

        The limit applies to the encoded event: exact, and free (measuring the JSON size would
        need a second serialisation of every event).
        """
        value = self.events.encode(record)
        if len(value) > self.settings.max_event_bytes:
            raise Rejection(
                "event_too_large",
                f"event is {len(value)} bytes; the limit is {self.settings.max_event_bytes} bytes",
            )
        return (self.events_topic, partition_key(record, self.settings.placeholder_ids), value)

    def _rejected(
        self,
        rejection: Rejection,
        payload: Any,
        path: str,
        received_at: int,
        index: int | None,
        source: str | None,
    ) -> Record:
        try:
            text = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
        except (TypeError, orjson.JSONEncodeError):
            text = repr(payload)
        value = self.rejected.encode(
            {
                "code": rejection.code,
                "message": rejection.message,
                "receivedAt": received_at,
                "path": path,
                "index": index,
                "sourceId": source,
                "payload": text,
            }
        )
        metrics.child(metrics.EVENTS_REJECTED, rejection.code).inc()
        log.info(
            "event rejected",
            extra={
                "code": rejection.code,
                "reason": rejection.message,
                "messageId": payload.get("messageId") if isinstance(payload, dict) else None,
                "path": path,
                "index": index,
                "sourceId": source,
            },
        )
        return (self.rejected_topic, None, value)

    async def _publish(self, records: Sequence[Record]) -> None:
        try:
            await self.publisher.publish(records)
        except KafkaUnavailable as exc:
            log.warning("publish failed", extra={"records": len(records), "error": str(exc)})
            raise HttpError(
                503,
                "kafka_unavailable",
                f"events could not be stored durably, retry later: {exc}",
                {"Retry-After": RETRY_AFTER_SECONDS},
            ) from None

    # -- Tracking API --------------------------------------------------------------------------

    def _authenticate(self, header_key: str | None, body: dict[str, Any]) -> str:
        key = header_key if header_key is not None else body.get("writeKey")
        if not isinstance(key, str) or not self.write_keys.accepts(key):
            raise unauthorized()
        return key

    async def single(self, request: Request, event_type: str) -> Response:
        """``/v1/identify`` and friends: one call per request."""
        header_key = basic_user(request)
        if header_key is not None and not self.write_keys.accepts(header_key):
            raise unauthorized("the write key is not valid")
        body = await read_json_object(request, self.settings.max_event_bytes)
        source = self.source_id(self._authenticate(header_key, body))
        received_at = now_micros()
        try:
            record = normalize(
                body,
                event_type=event_type,
                received_at=received_at,
                source_id=source,
                max_future_micros=self.max_future_micros,
            )
            accepted = self._accepted(record)
        except Rejection as rejection:
            await self._publish(
                [self._rejected(rejection, body, request.url.path, received_at, None, source)]
            )
            raise HttpError(400, rejection.code, rejection.message) from None
        if self._suppressed(record):
            return json_response({"success": True})
        await self._publish([accepted])
        metrics.child(metrics.EVENTS_ACCEPTED, event_type).inc()
        return json_response({"success": True})

    async def batch(self, request: Request) -> Response:
        """``/v1/batch`` and ``/v1/import``: up to ``max_batch_events`` calls per request."""
        header_key = basic_user(request)
        if header_key is not None and not self.write_keys.accepts(header_key):
            raise unauthorized("the write key is not valid")
        body = await read_json_object(request, self.settings.max_request_bytes)
        items = body.get("batch")
        if not isinstance(items, list):
            raise HttpError(400, "invalid_batch", "batch must be an array of events")
        if len(items) > self.settings.max_batch_events:
            raise HttpError(
                400,
                "batch_too_large",
                f"batch has {len(items)} events; the limit is {self.settings.max_batch_events}",
            )
        request_key = header_key if header_key is not None else body.get("writeKey")
        if not (isinstance(request_key, str) and self.write_keys.accepts(request_key)):
            request_key = None
            # Without a request-level key, every item must authenticate itself.
            if not items or not all(isinstance(item, dict) and "writeKey" in item for item in items):
                raise unauthorized()
        defaults = self._batch_defaults(body)
        return await self._ingest_many(items, request.url.path, request_key, defaults, event_type=None)

    def _batch_defaults(self, body: dict[str, Any]) -> BatchDefaults:
        context, integrations, sent_at = body.get("context"), body.get("integrations"), body.get("sentAt")
        if context is not None and not isinstance(context, dict):
            raise HttpError(400, "invalid_batch", "batch-level context must be an object")
        if integrations is not None and not isinstance(integrations, dict):
            raise HttpError(400, "invalid_batch", "batch-level integrations must be an object")
        if sent_at is not None and not isinstance(sent_at, str):
            raise HttpError(400, "invalid_batch", "batch-level sentAt must be an ISO-8601 string")
        if context is None and integrations is None and sent_at is None:
            return NO_DEFAULTS
        return BatchDefaults(context=context, integrations=integrations, sent_at=sent_at)

    async def _ingest_many(
        self,
        items: Iterable[Any],
        path: str,
        request_key: str | None,
        defaults: BatchDefaults,
        event_type: str | None,
        from_segment: bool = False,
    ) -> Response:
        received_at = now_micros()
        records: list[Record] = []
        rejected: list[dict[str, Any]] = []
        accepted_types: dict[str, int] = {}
        request_source = self.source_id(request_key) if request_key is not None else None
        prepared: list[Prepared] = []
        for index, item in enumerate(items):
            source = request_source
            try:
                if not from_segment and isinstance(item, dict) and "writeKey" in item:
                    item_key = item["writeKey"]
                    if not (isinstance(item_key, str) and self.write_keys.accepts(item_key)):
                        raise Rejection("invalid_write_key", "the event's writeKey is not valid")
                    source = self.source_id(item_key)
                assert source is not None  # guaranteed by the request-level check
                record = normalize(
                    item,
                    event_type=event_type,
                    received_at=received_at,
                    source_id=source,
                    defaults=defaults,
                    from_segment=from_segment,
                    position=index,
                    max_future_micros=self.max_future_micros,
                )
            except Rejection as rejection:
                records.append(self._rejected(rejection, item, path, received_at, index, source))
                rejected.append({"index": index, "code": rejection.code, "message": rejection.message})
                continue
            prepared.append(Prepared(index, item, source, record))
        for index, item, source, record in self._without_suppressed(prepared):
            try:
                records.append(self._accepted(record))
            except Rejection as rejection:
                records.append(self._rejected(rejection, item, path, received_at, index, source))
                rejected.append({"index": index, "code": rejection.code, "message": rejection.message})
                continue
            kind = record["type"]
            accepted_types[kind] = accepted_types.get(kind, 0) + 1
        await self._publish(records)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "events accepted", extra={"path": path, "records": len(records), "rejected": len(rejected)}
            )
        for kind, count in accepted_types.items():
            metrics.child(metrics.EVENTS_ACCEPTED, kind).inc(count)
        response: dict[str, Any] = {"success": True, "accepted": len(records) - len(rejected)}
        if rejected:
            # Invalid items are found before oversized ones: answer in the batch's order.
            response["rejected"] = sorted(rejected, key=lambda rejection: rejection["index"])
        return json_response(response)

    # -- Segment Webhooks destination ----------------------------------------------------------

    async def _forwarded_deletions(self, items: list[Any]) -> list[Any]:
        """Deletion requests Segment forwards (a ``delete`` message with the person's ids) become
        ``DELETE_ONLY`` regulations; the other items are ingested as usual."""
        deletions = [item for item in items if isinstance(item, dict) and item.get("type") == "delete"]
        if not deletions or self.regulations is None:
            return items
        by_type: dict[str, list[str]] = {"USER_ID": [], "ANONYMOUS_ID": []}
        for item in deletions:
            for field, subject in (("userId", "USER_ID"), ("anonymousId", "ANONYMOUS_ID")):
                value = item.get(field)
                if isinstance(value, str) and value.strip():
                    by_type[subject].append(value)
        for subject, ids in by_type.items():
            if ids:
                body = {"regulationType": "DELETE_ONLY", "subjectType": subject, "subjectIds": ids[:5000]}
                regulation = parse_request(body, now_micros(), source="webhook")
                await asyncio.to_thread(self.regulations.save, regulation)
                log.info("forwarded deletion accepted", extra={"regulation": regulation.id, "ids": len(ids)})
        return [item for item in items if not (isinstance(item, dict) and item.get("type") == "delete")]

    def _webhook_key(self, request: Request) -> str | None:
        header = request.headers.get("x-api-key")
        if header:
            return header.strip()
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return authorization[7:].strip()
        if authorization:
            return basic_user(request)
        return None

    async def webhook(self, request: Request) -> Response:
        """``/v1/webhook``: events delivered by Segment (one object, or an array of them)."""
        secret = self.settings.webhook_secret
        if not self.webhook_keys and not secret:
            raise HttpError(
                401,
                "webhook_not_configured",
                "set FEEDHOUSE_WEBHOOK_API_KEYS and/or FEEDHOUSE_WEBHOOK_SECRET",
            )
        key = self._webhook_key(request)
        if self.webhook_keys and not self.webhook_keys.accepts(key):
            raise unauthorized("a valid webhook API key is required (Basic, Bearer or X-API-Key)")
        check_content_type(request)
        raw = await read_body(request, self.settings.webhook_max_request_bytes)
        if secret and not verify_signature(secret, raw, request.headers.get("x-signature")):
            raise HttpError(401, "invalid_signature", "X-Signature is not the HMAC-SHA1 of the body")
        payload = parse_json(raw)
        items = payload if isinstance(payload, list) else [payload]
        if len(items) > WEBHOOK_MAX_EVENTS:
            raise HttpError(400, "batch_too_large", f"{len(items)} events; the limit is {WEBHOOK_MAX_EVENTS}")
        source_key = f"webhook:{key or 'signed'}"
        items = await self._forwarded_deletions(items)
        return await self._ingest_many(
            items, request.url.path, source_key, NO_DEFAULTS, event_type=None, from_segment=True
        )
