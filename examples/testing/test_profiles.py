"""The application's tests: S3 from mock_s3(), a Redis cache from redis_server(), an outage
from FaultyBlobStore - and not one endpoint, credential or port."""

from __future__ import annotations

import threading

from profiles import URL, Profiles

from kvstore.testing import FaultyBlobStore, mock_s3, redis_server


@mock_s3()
def test_create_and_read_a_profile() -> None:
    profiles = Profiles()
    assert profiles.create("ada", language="en") is True
    assert profiles.create("ada", language="fr") is False  # taken
    assert profiles.get("ada") == {"language": "en"}
    assert profiles.log_visit("ada", "/home") == 1
    profiles.close()


@mock_s3()
def test_two_users_racing_for_one_name_one_wins() -> None:
    results: list[bool] = []

    def claim(lang: str) -> None:
        profiles = Profiles(cache=None)
        results.append(profiles.create("grace", language=lang))
        profiles.close()

    threads = [threading.Thread(target=claim, args=(lang,)) for lang in ("en", "fr", "de")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, True]


def test_with_a_redis_cache() -> None:
    with redis_server() as redis, mock_s3():
        profiles = Profiles(cache=redis.url)
        profiles.create("linus", editor="vim")
        assert profiles.get("linus") == {"editor": "vim"}
        redis.pause()  # a Redis outage: reads go on against S3
        assert profiles.get("linus") == {"editor": "vim"}
        redis.resume()
        profiles.close()


def test_an_object_store_outage_degrades_gracefully() -> None:
    with mock_s3():
        faults = FaultyBlobStore.open(URL)
        profiles = Profiles(url=faults, cache=None)
        profiles.create("barbara", team="clu")
        faults.outage()
        assert profiles.get_or_default("barbara") == {"name": "barbara", "degraded": True}
        faults.restore()
        assert profiles.get_or_default("barbara") == {"team": "clu"}
        profiles.close()
