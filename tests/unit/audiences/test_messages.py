"""The calls a change becomes, exactly as Engage sends them to a destination."""

from __future__ import annotations

from feedhouse.audiences.messages import LoggedChange, messages_for

SPACE = "spa_test"


def logged(**fields: object) -> LoggedChange:
    base: dict[str, object] = {
        "seq": 7,
        "kind": "audience",
        "definition_key": "repeat_buyers",
        "computation_id": "aud_1",
        "profile_id": "ada",
        "user_id": "ada",
        "anonymous_id": "",
        "member": True,
        "value": "",
        "changed_at": 1_767_225_600_000_000,
        "message_id": "fh-abc",
    }
    base.update(fields)
    return LoggedChange(**base)  # type: ignore[arg-type]


def test_entering_an_audience_is_an_identify_and_an_audience_entered_track() -> None:
    identify, track = messages_for(logged(), SPACE)
    personas = {
        "computation_class": "audience",
        "computation_key": "repeat_buyers",
        "computation_id": "aud_1",
        "namespace": SPACE,
        "space_id": SPACE,
    }
    assert identify == {
        "type": "identify",
        "messageId": "fh-abc.identify",
        "userId": "ada",
        "traits": {"repeat_buyers": True},
        "timestamp": "2026-01-01T00:00:00.000000Z",
        "context": {"personas": personas, "library": {"name": "feedhouse", "version": "0.1.0"}},
    }
    assert track["type"] == "track" and track["event"] == "Audience Entered"
    assert track["properties"] == {"audience_key": "repeat_buyers", "repeat_buyers": True}
    assert track["context"]["personas"] == personas and track["messageId"] == "fh-abc.track"


def test_exiting_and_anonymous_profiles() -> None:
    identify, track = messages_for(logged(member=False, user_id="", anonymous_id="dev-1"), SPACE)
    assert identify["traits"] == {"repeat_buyers": False} and track["event"] == "Audience Exited"
    assert "userId" not in identify and identify["anonymousId"] == "dev-1"
    assert track["properties"]["repeat_buyers"] is False


def test_a_computed_trait_is_one_identify_with_its_value() -> None:
    (identify,) = messages_for(logged(kind="trait", definition_key="top_sku", value='"sku-1"'), SPACE)
    assert identify["traits"] == {"top_sku": "sku-1"}
    assert identify["context"]["personas"]["computation_class"] == "trait"
    (gone,) = messages_for(logged(kind="trait", definition_key="top_sku", value=""), SPACE)
    assert gone["traits"] == {"top_sku": None}
