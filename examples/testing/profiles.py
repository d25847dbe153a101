"""A small application that keeps user profiles in S3, with a cache in front: the code a
user of kvstore would test. It names its bucket and nothing else - no endpoint, no
credentials, no port: in production they come from the environment (AWS_* variables,
instance roles), in tests from kvstore.testing (see test_profiles.py)."""

from __future__ import annotations

import json
from typing import Any

import kvstore

URL = "s3://profiles-bucket/app"


class Profiles:
    """Profiles by user name, each saved once (``create``) and then updated."""

    def __init__(self, url: Any = URL, cache: str | None = "local") -> None:
        self.store = kvstore.open(url, cache=cache)

    def create(self, name: str, **fields: Any) -> bool:
        """Save a new profile; False if ``name`` is taken (atomic: two at once, one wins)."""
        return bool(self.store.set(f"profile:{name}", json.dumps(fields), nx=True))

    def get(self, name: str) -> dict[str, Any] | None:
        raw = self.store.get(f"profile:{name}")
        return None if raw is None else dict(json.loads(raw))

    def get_or_default(self, name: str) -> dict[str, Any]:
        """The profile, or a default one while the store cannot be reached."""
        try:
            return self.get(name) or {}
        except kvstore.BackendError:
            return {"name": name, "degraded": True}

    def log_visit(self, name: str, page: str) -> int:
        """Append to the user's history; returns its length."""
        return self.store.append(f"visits:{name}", page)

    def close(self) -> None:
        self.store.close()
