"""Regulations, modelled on Segment's Public API: what an operator asks, validated; no I/O.

A request names a type, a subject type and 1 to 5,000 subject ids. Its subject is a *person*:
each id is resolved to its profile, and everything of every id of that profile is affected.

========================  ========  ==================================================
type                      suppress  delete
========================  ========  ==================================================
``SUPPRESS_ONLY``         yes       no
``SUPPRESS_WITH_DELETE``  yes       yes (nothing of the person comes back, ever)
``DELETE_ONLY``           no        yes (genuinely new events start a new profile)
``UNSUPPRESS``            lifted    no
========================  ========  ==================================================

Segment also has ``DELETE_INTERNAL`` (delete inside Segment only): Feedhouse has no
downstream copies of events, so it is accepted and does what ``DELETE_ONLY`` does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

REGULATION_TYPES = ("SUPPRESS_ONLY", "SUPPRESS_WITH_DELETE", "DELETE_ONLY", "DELETE_INTERNAL", "UNSUPPRESS")
SUBJECT_TYPES = ("USER_ID", "ANONYMOUS_ID")
STATUSES = ("INITIALIZED", "RUNNING", "FINISHED", "FAILED")
MAX_SUBJECTS = 5000
MAX_ID_CHARS = 1024


class InvalidRegulation(ValueError):
    """A request that cannot be accepted; the message names the field."""


@dataclass
class Regulation:
    """One regulation and what became of it (the audit trail keeps it, without deleted data)."""

    id: str
    regulation_type: str
    subject_type: str
    subject_ids: list[str]
    status: str = "INITIALIZED"
    created_at: int = 0  # epoch microseconds
    started_at: int | None = None
    finished_at: int | None = None
    reason: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    source: str = "api"  # api | webhook (a deletion Segment forwarded)

    @property
    def suppresses(self) -> bool:
        return self.regulation_type in ("SUPPRESS_ONLY", "SUPPRESS_WITH_DELETE")

    @property
    def deletes(self) -> bool:
        return self.regulation_type in ("SUPPRESS_WITH_DELETE", "DELETE_ONLY", "DELETE_INTERNAL")

    @property
    def unsuppresses(self) -> bool:
        return self.regulation_type == "UNSUPPRESS"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "regulationType": self.regulation_type,
            "subjectType": self.subject_type,
            "subjectIds": self.subject_ids,
            "overallStatus": self.status,
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "reason": self.reason,
            "counts": self.counts,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Regulation:
        return cls(
            id=str(data["id"]),
            regulation_type=str(data["regulationType"]),
            subject_type=str(data["subjectType"]),
            subject_ids=[str(item) for item in data["subjectIds"]],
            status=str(data.get("overallStatus", "INITIALIZED")),
            created_at=int(data.get("createdAt") or 0),
            started_at=data.get("startedAt"),
            finished_at=data.get("finishedAt"),
            reason=data.get("reason"),
            counts={str(k): int(v) for k, v in (data.get("counts") or {}).items()},
            source=str(data.get("source", "api")),
        )


def parse_request(body: Any, now: int, source: str = "api") -> Regulation:
    """A new regulation from a request body, or :class:`InvalidRegulation` naming the field."""
    if not isinstance(body, dict):
        raise InvalidRegulation("body: must be a JSON object")
    unknown = sorted(set(body) - {"regulationType", "subjectType", "subjectIds"})
    if unknown:
        raise InvalidRegulation(f"{unknown[0]}: unknown field")
    kind = body.get("regulationType")
    if kind not in REGULATION_TYPES:
        raise InvalidRegulation(f"regulationType: must be one of {', '.join(REGULATION_TYPES)}")
    subject = body.get("subjectType", "USER_ID")
    if subject not in SUBJECT_TYPES:
        raise InvalidRegulation(f"subjectType: must be one of {', '.join(SUBJECT_TYPES)}")
    ids = body.get("subjectIds")
    if not isinstance(ids, list) or not ids:
        raise InvalidRegulation("subjectIds: must be a non-empty array of ids")
    if len(ids) > MAX_SUBJECTS:
        raise InvalidRegulation(f"subjectIds: at most {MAX_SUBJECTS} ids per regulation, got {len(ids)}")
    for index, value in enumerate(ids):
        if not isinstance(value, str) or not value.strip():
            raise InvalidRegulation(f"subjectIds[{index}]: must be a non-empty string")
        if len(value) > MAX_ID_CHARS:
            raise InvalidRegulation(f"subjectIds[{index}]: longer than {MAX_ID_CHARS} characters")
    return Regulation(
        id=uuid.uuid4().hex,
        regulation_type=str(kind),
        subject_type=str(subject),
        subject_ids=list(dict.fromkeys(ids)),
        created_at=now,
        source=source,
    )
