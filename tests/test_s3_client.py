"""The S3 backend's client settings that trim botocore's CPU per request (issue 16): they
change nothing a user set, and the date parser reads what botocore's reads."""

from __future__ import annotations

import datetime

import pytest

from kvstore.blob import open_blob_store
from kvstore.blob.s3 import USER_AGENT, parse_timestamp
from kvstore.stats import Stats

UTC = datetime.timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mon, 30 Nov 2026 12:34:56 GMT", datetime.datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)),
        (
            "2026-11-30T12:34:56.789Z",
            datetime.datetime(2026, 11, 30, 12, 34, 56, 789000, tzinfo=UTC),
        ),
        ("2026-11-30T12:34:56Z", datetime.datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)),
        ("2026-11-30T13:34:56+01:00", datetime.datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)),
    ],
)
def test_dates_parse_as_botocore_parses_them(text: str, expected: datetime.datetime) -> None:
    from botocore.utils import parse_timestamp as botocore_parse

    assert parse_timestamp(text) == expected == botocore_parse(text)
    assert parse_timestamp(text).tzinfo is not None


def test_what_the_standard_library_cannot_read_goes_to_botocore() -> None:
    assert parse_timestamp(1796036306) == datetime.datetime.fromtimestamp(1796036306, UTC)
    assert parse_timestamp("1796036306") == datetime.datetime.fromtimestamp(1796036306, UTC)
    with pytest.raises(ValueError):
        parse_timestamp("not a date")


def _options(storage_options: dict[str, object]) -> dict[str, object]:
    blob = open_blob_store("s3://bucket/prefix", storage_options, stats=Stats())
    return blob._filesystem_options()  # type: ignore[attr-defined,no-any-return]


def test_the_trims_are_defaults_a_user_overrides() -> None:
    ours = _options({"endpoint_url": "http://127.0.0.1:1"})
    config = ours["config_kwargs"]
    assert isinstance(config, dict)
    assert config["user_agent"] == USER_AGENT and USER_AGENT.startswith("kvstore/")
    assert config["parameter_validation"] is False
    assert "session" in ours
    from aiobotocore.session import AioSession

    session = AioSession()
    theirs = _options(
        {
            "config_kwargs": {"user_agent": "mine/1", "parameter_validation": True},
            "session": session,
        }
    )
    config = theirs["config_kwargs"]
    assert isinstance(config, dict)
    assert config["user_agent"] == "mine/1" and config["parameter_validation"] is True
    assert theirs["session"] is session  # the user's own, with botocore's parsers


def test_requests_still_work_with_the_trims(make_target) -> None:  # type: ignore[no-untyped-def]
    with make_target("s3").open() as store:
        store.set("k", "v")
        assert store.get("k") == b"v"
        store.append("log", "a")
        assert store.range("log") == [b"a"]
        assert store.purge() == {"expired": 0, "log_objects": 0}  # a dated listing parses
