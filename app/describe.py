"""Feedhouse definitions in words: an audience's condition or a computed trait's formula as one line.

The pages show what an audience *means* next to its JSON, so an analyst reads
``"Order Completed" at least 2 times in the last 30 days and not plan = "free"`` instead of a
tree. Input is the canonical body ``audiences.definitions.parse_definition`` stored (every
field already validated), but anything unexpected is still rendered (as JSON) rather than
raising: a page must not fail on a definition written by a newer version. Output is plain text
that the templates escape like everything else (names, events and values come from operators).
"""

from __future__ import annotations

from typing import Any

import orjson

OPS = {"eq": "=", "neq": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "contains": "contains"}
COUNTS = {
    "eq": "exactly",
    "neq": "not exactly",
    "gt": "more than",
    "gte": "at least",
    "lt": "fewer than",
    "lte": "at most",
}
COMPUTE_WORDS = {
    "count": "count",
    "sum": "sum",
    "avg": "average",
    "min": "minimum",
    "max": "maximum",
    "first": "first",
    "last": "last",
    "most_frequent": "most frequent",
    "unique": "unique values",
}


def _json(value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def _test(subject: str, op: object, value: object) -> str:
    """``subject op value`` of a filter or a trait test (``exists``: present / absent)."""
    if op == "exists":
        return f"{subject} is absent" if value is False else f"{subject} exists"
    return f"{subject} {OPS.get(str(op), str(op))} {_json(value)}"


def _filters(where: object) -> str:
    if not isinstance(where, list) or not where:
        return ""
    parts = [
        _test(str(item.get("property", "?")), item.get("op"), item.get("value"))
        if isinstance(item, dict)
        else _json(item)
        for item in where
    ]
    return " where " + " and ".join(parts)


def _events(selector: dict[str, Any]) -> str:
    """Which events: a track event's name, or every call of a type."""
    if "event" in selector:
        # JSON quoting: a quote inside a name stays unambiguous.
        return _json(selector["event"])
    return f"any {selector.get('type', '?')} call"


def _window(selector: dict[str, Any]) -> str:
    days = selector.get("within_days")
    if days is None:
        return ""
    return " in the last day" if days == 1 else f" in the last {days} days"


def describe_condition(condition: object, nested: bool = False) -> str:
    """An audience's ``when`` in words; groups inside groups are parenthesised."""
    if not isinstance(condition, dict):
        return _json(condition)
    for joiner in ("all", "any"):
        if joiner in condition and isinstance(condition[joiner], list):
            items = condition[joiner]
            if len(items) == 1:
                return describe_condition(items[0], nested)
            text = f" {'and' if joiner == 'all' else 'or'} ".join(describe_condition(i, True) for i in items)
            return f"({text})" if nested else text
    if "not" in condition:
        return f"not ({describe_condition(condition['not'])})"
    if "trait" in condition:
        subject = str(condition["trait"]) + (" (computed)" if condition.get("computed") else "")
        return _test(subject, condition.get("op"), condition.get("value"))
    if "audience" in condition:
        return f"in audience {condition['audience']}"
    if "event" in condition or "type" in condition:
        count = condition.get("count")
        times = ""
        if isinstance(count, dict) and (count.get("op"), count.get("value")) != ("gte", 1):
            words = COUNTS.get(str(count.get("op")), str(count.get("op")))
            amount = count.get("value")
            times = f" {words} {amount} {'time' if amount == 1 else 'times'}"
        return f"did {_events(condition)}{times}{_window(condition)}{_filters(condition.get('where'))}"
    return _json(condition)


def describe_compute(compute: object) -> str:
    """A computed trait's ``compute`` in words."""
    if not isinstance(compute, dict):
        return _json(compute)
    op = str(compute.get("op", "?"))
    words = COMPUTE_WORDS.get(op, op)
    limit = f" (at most {compute['limit']})" if op == "unique" and "limit" in compute else ""
    if compute.get("property"):
        what = f"{words} of {compute['property']}{limit} over {_events(compute)}"
    else:
        what = f"{words} of {_events(compute)}"
    return f"{what}{_window(compute)}{_filters(compute.get('where'))}"


def describe(body: dict[str, Any]) -> str:
    """A stored definition body (trait or audience) in words."""
    if "compute" in body:
        return describe_compute(body["compute"])
    return describe_condition(body.get("when"))
