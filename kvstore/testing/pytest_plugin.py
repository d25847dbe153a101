"""pytest fixtures for tests of code that uses kvstore (installed as a pytest plugin by
``pip install 'kvstore[testing]'``; every fixture is inert until a test asks for it).

* ``kvstore_s3`` - a private moto S3 server for the test (:func:`~kvstore.testing.mock_s3`):
  ``kvstore.open("s3://any-bucket/...")`` reaches it; the fixture's value is the server.
* ``kvstore_gcs`` - the same with the GCS emulator (:func:`~kvstore.testing.mock_gcs`).
* ``kvstore_redis`` - a private redis-server (:func:`~kvstore.testing.redis_server`); its
  ``url`` goes to ``cache=``; ``pause()``/``resume()``/``kill()``/``restart()``.

Without the entry point (or to be explicit): ``pytest_plugins = ["kvstore.testing.pytest_plugin"]``
in a ``conftest.py``, or ``pytest -p kvstore.testing.pytest_plugin``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .mocks import mock_gcs, mock_s3, redis_server


@pytest.fixture
def kvstore_s3() -> Iterator[Any]:
    """A private moto S3 server for this test; ``kvstore.open("s3://...")`` reaches it."""
    with mock_s3() as server:
        yield server


@pytest.fixture
def kvstore_gcs() -> Iterator[Any]:
    """A private GCS emulator for this test; ``kvstore.open("gs://...")`` reaches it."""
    with mock_gcs() as server:
        yield server


@pytest.fixture
def kvstore_redis() -> Iterator[Any]:
    """A private redis-server for this test (``.url`` for ``cache=``)."""
    with redis_server() as server:
        yield server
