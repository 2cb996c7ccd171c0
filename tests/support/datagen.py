"""A realistic Segment stream, reproducible from a seed: for tests, benchmarks and demos.

The stream follows people through their lives as a product sees them: anonymous visits on one
or more devices, an identify that links the device, later devices linked the same way, a few
users re-keyed with ``alias``, B2B users joining groups (and switching), Engage audiences
entering and exiting, and a realistic mix of page / screen / track calls with properties of
realistic size. Some devices are shared by two people (identity conflicts), a few events
carry placeholder ids, and a share of events arrives late (older timestamp than the previous).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

PAGES = [
    ("/", "Home"),
    ("/pricing", "Pricing"),
    ("/docs", "Docs"),
    ("/docs/getting-started", "Getting Started"),
    ("/blog/launch", "We launched"),
    ("/signup", "Sign up"),
    ("/account", "Account"),
]
SCREENS = ["Home", "Feed", "Search", "Settings", "Checkout", "Profile"]
TRACKS = [
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Order Completed",
    "Signed Up",
    "Feature Used",
    "Email Opened",
]
PLANS = ["free", "starter", "pro", "enterprise"]
AUDIENCES = ["order_completed_last_30days", "high_value_customers"]
PLACEHOLDERS = ["anonymous", "undefined", "null", "0"]
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15"
)


@dataclass
class Person:
    index: int
    user_id: str
    devices: list[str]
    identified: bool = False
    linked: set[str] = field(default_factory=set)
    group: str | None = None
    audiences: dict[str, bool] = field(default_factory=dict)
    aliased: int = 0


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StreamGenerator:
    """Yields Segment calls (dicts as an SDK would send them) in arrival order."""

    def __init__(self, seed: int = 7, profiles: int = 1000, groups: int | None = None) -> None:
        self.random = random.Random(seed)
        self.profiles = profiles
        self.groups = groups if groups is not None else max(1, profiles // 50)
        self.people: list[Person] = []
        self.clock = BASE_TIME
        self.sequence = 0
        self.seed = seed

    def _person(self) -> Person:
        # Heavy users exist: a power-law-ish choice over people created so far, plus newcomers.
        rng = self.random
        if len(self.people) < self.profiles and (not self.people or rng.random() < 0.35):
            index = len(self.people)
            devices = [f"anon-{self.seed}-{index}-0"]
            person = Person(index=index, user_id=f"user-{self.seed}-{index}", devices=devices)
            self.people.append(person)
            return person
        return self.people[int(len(self.people) * rng.random() ** 2.2)]

    def _base(self, kind: str, person: Person, device: str, when: datetime) -> dict[str, Any]:
        self.sequence += 1
        message: dict[str, Any] = {
            "type": kind,
            "messageId": f"msg-{self.seed}-{self.sequence}",
            "timestamp": _iso(when),
            "anonymousId": device,
            "context": {
                "library": {"name": "analytics.js", "version": "2.11.1"},
                "ip": f"203.0.{person.index % 250}.{self.sequence % 250}",
                "userAgent": USER_AGENT,
                "locale": "en-US",
            },
        }
        if person.identified and device in person.linked:
            message["userId"] = person.user_id
        return message

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        rng = self.random
        self.clock += timedelta(milliseconds=rng.expovariate(1 / 40))
        when = self.clock
        if rng.random() < 0.03:  # late arrival: happened a while ago
            when = when - timedelta(seconds=rng.uniform(1, 600))
        person = self._person()
        if rng.random() < 0.02 and len(person.devices) < 4:
            person.devices.append(f"anon-{self.seed}-{person.index}-{len(person.devices)}")
        device = rng.choice(person.devices)
        if rng.random() < 0.01 and len(self.people) > 1:  # a shared device: someone else's
            other = self.people[rng.randrange(len(self.people))]
            device = rng.choice(other.devices)
        roll = rng.random()
        if (not person.identified and roll < 0.10) or (
            person.identified and device not in person.linked and roll < 0.3
        ):
            return self._identify(person, device, when)
        if person.identified and roll < 0.005:
            return self._alias(person, device, when)
        if person.identified and roll < 0.02:
            return self._group(person, device, when)
        if person.identified and roll < 0.03:
            return self._audience(person, device, when)
        if roll < 0.06:
            return self._identify(person, device, when)
        return self._activity(person, device, when)

    def _identify(self, person: Person, device: str, when: datetime) -> dict[str, Any]:
        person.identified = True
        person.linked.add(device)
        message = self._base("identify", person, device, when)
        message["userId"] = person.user_id
        if self.random.random() < 0.01:
            message["userId"] = self.random.choice(PLACEHOLDERS)
        message["traits"] = {
            "email": f"{person.user_id}@example.com",
            "name": f"Person {person.index}",
            "plan": self.random.choice(PLANS),
            "logins": self.random.randrange(1, 500),
        }
        return message

    def _alias(self, person: Person, device: str, when: datetime) -> dict[str, Any]:
        previous = person.user_id
        person.aliased += 1
        person.user_id = f"{previous.split('~')[0]}~{person.aliased}"
        message = self._base("alias", person, device, when)
        message.pop("anonymousId")
        message["previousId"] = previous
        message["userId"] = person.user_id
        return message

    def _group(self, person: Person, device: str, when: datetime) -> dict[str, Any]:
        person.group = f"group-{self.seed}-{self.random.randrange(self.groups)}"
        message = self._base("group", person, device, when)
        message["groupId"] = person.group
        message["traits"] = {"name": f"Company {person.group}", "employees": self.random.randrange(5, 5000)}
        return message

    def _audience(self, person: Person, device: str, when: datetime) -> dict[str, Any]:
        audience = self.random.choice(AUDIENCES)
        member = not person.audiences.get(audience, False)
        person.audiences[audience] = member
        message = self._base("identify", person, device, when)
        message["traits"] = {audience: member}
        message["context"]["personas"] = {
            "computation_class": "audience",
            "computation_key": audience,
            "computation_id": f"aud_{audience}",
            "space_id": "spa_demo",
        }
        return message

    def _activity(self, person: Person, device: str, when: datetime) -> dict[str, Any]:
        rng = self.random
        roll = rng.random()
        if roll < 0.45:
            path, title = rng.choice(PAGES)
            message = self._base("page", person, device, when)
            message["name"] = title
            message["properties"] = {
                "path": path,
                "url": f"https://www.example.com{path}?utm_source=newsletter&utm_campaign=c{rng.randrange(40)}",
                "title": f"{title} | Example",
                "referrer": "https://www.google.com/",
                "search": "?utm_source=newsletter",
            }
            return message
        if roll < 0.55:
            message = self._base("screen", person, device, when)
            message["name"] = rng.choice(SCREENS)
            message["properties"] = {"build": 4210 + rng.randrange(30), "orientation": "portrait"}
            return message
        message = self._base("track", person, device, when)
        message["event"] = rng.choice(TRACKS)
        message["properties"] = {
            "product_id": f"sku-{rng.randrange(2000)}",
            "name": "Organic cotton hoodie",
            "category": "Apparel",
            "price": round(rng.uniform(5, 300), 2),
            "quantity": rng.randrange(1, 4),
            "currency": "USD",
            "revenue": round(rng.uniform(5, 900), 2),
            "coupon": rng.choice([None, "WINTER10", "VIP"]),
        }
        return message


def generate(count: int, seed: int = 7, profiles: int = 1000) -> list[dict[str, Any]]:
    """``count`` events of a fresh stream (convenience for tests)."""
    stream = StreamGenerator(seed=seed, profiles=profiles)
    return [next(stream) for _ in range(count)]
