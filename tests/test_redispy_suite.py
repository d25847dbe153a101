"""redis-py's OWN test suite, run against redis-py-compatible clients (the kvstore.Redis face).

What happens
------------
1. redis-py's source distribution, for the redis-py version installed here, is fetched
   with ``pip download --no-binary :all: --no-deps redis==<version>`` into a cache
   directory reused across runs (``$KVSTORE_REDISPY_CACHE``, default
   ``<tmp>/kvstore-redispy``), and its ``tests/`` and ``pyproject.toml`` are unpacked
   there (not its ``redis/`` package: the installed redis-py is what runs). Without
   network and without a cached copy, the tests here are skipped. No redis-py code or
   test is kept in this repository.
2. :func:`analyze_file` reads redis-py's test files (``ast``, nothing is imported) and,
   for every test, finds the redis-py client methods it calls; a test is *in scope* when
   all of them belong to the command families of :data:`SCOPE`. :data:`SELECTED` is the
   list of in-scope tests, written from that analysis and kept here by hand, grouped by
   family; ``test_scope_report`` checks it against a fresh analysis and writes the
   report of every test NOT selected, naming its out-of-scope commands (committed as
   ``tests/redispy_scope_report.md``; regenerate it with
   ``python tests/test_redispy_suite.py --write-report``).
3. ``test_redispy_suite[<target>-<sync|async>]`` runs the selected tests of
   ``tests/test_commands.py`` + ``tests/test_pipeline.py`` (sync) or their
   ``tests/test_asyncio/`` twins (async) in a subprocess pytest rooted in the unpacked
   sdist, with tests/redispy_plugin.py loaded: it makes redis-py's client fixtures
   (``r``, ``decoded_r``, ``r2``, the async ``create_redis``) build clients with a
   factory named in an environment variable. The subprocess's JUnit XML is parsed; the
   test fails listing the failing redis-py test ids, and prints pass/fail/skip counts.

Targets
-------
* ``redis-server`` - plain redis-py clients against a ``redis-server`` this module
  starts on a free loopback port (``$KVSTORE_REDISPY_REDIS_SERVER`` names another binary,
  e.g. a Redis 7). Every selected test must pass: it proves the harness. It is also
  audited: the commands each test really sent (the server's INFO commandstats) must all
  be in :data:`SERVER_COMMANDS`, so a call the static analysis missed shows up (in the
  tests the server's version let run).
* ``kvstore-memory``, ``kvstore-local``, ``kvstore-seaweedfs``, ``kvstore-memory+redis-cache``
  - ``kvstore.Redis(url=..., cache=..., decode_responses=...)`` (``kvstore.AsyncRedis`` for
  async) with the arguments from :func:`kvstore_redis_arguments` - THE hook to adjust
  once that face exists. Skipped while ``kvstore.Redis`` / ``kvstore.AsyncRedis`` does
  not exist. redis-py's version-gated markers evaluate as for Redis
  :data:`KVSTORE_REDIS_VERSION` there (``$KVSTORE_REDISPY_SERVER_VERSION`` overrides).

* ``kvstore-serve-*`` (``test_redispy_suite_over_tcp``) - plain redis-py clients over TCP
  to ``kvstore serve`` (memory, local disk and SeaweedFS, each under RESP3 and RESP2):
  the sync selection, the same XFAILs as the other kvstore targets (one command layer).

Expected failures are explicit: :data:`XFAIL` (per target, with a reason, strict).

Needs pytest-asyncio for the async half (redis-py's async conftest imports it); without
it the async runs are skipped saying so.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import pytest
import redispy_plugin
from packaging.version import Version

HERE = Path(__file__).resolve().parent
REPORT_PATH = HERE / "redispy_scope_report.md"

# -- what is in scope --------------------------------------------------------------------------

# redis-py client methods, by command family. Dunders: r[k] (GET), r[k] = v (SET),
# del r[k] (DEL), k in r (EXISTS).
SCOPE: dict[str, tuple[str, ...]] = {
    "keys": (
        "type", "exists", "delete", "unlink", "expire", "pexpire", "expireat", "pexpireat",
        "expiretime", "pexpiretime", "ttl", "pttl", "persist", "keys", "scan", "scan_iter",
        "rename", "renamenx", "flushdb", "dbsize", "time", "__delitem__", "__contains__",
    ),
    "strings": (
        "get", "set", "setnx", "setex", "psetex", "getset", "getdel", "getex", "mget", "mset",
        "msetnx", "append", "strlen", "getrange", "setrange", "incr", "incrby", "decr",
        "decrby", "incrbyfloat", "__getitem__", "__setitem__",
    ),
    "hashes": (
        "hset", "hget", "hmget", "hgetall", "hdel", "hexists", "hlen", "hkeys", "hvals",
        "hincrby", "hincrbyfloat", "hsetnx", "hscan", "hscan_iter", "hstrlen", "hmset",
    ),
    "sets": (
        "sadd", "srem", "smembers", "sismember", "smismember", "scard", "spop", "sscan",
        "sscan_iter", "sinter", "sunion", "sdiff", "srandmember", "smove", "sinterstore",
        "sunionstore", "sdiffstore",
    ),
    "zsets": (
        "zadd", "zrem", "zscore", "zincrby", "zcard", "zcount", "zrange", "zrangebyscore",
        "zrevrange", "zrevrangebyscore", "zrank", "zrevrank", "zremrangebyscore",
        "zremrangebyrank", "zpopmin", "zpopmax", "zmscore", "zlexcount", "zrangebylex",
        "zrevrangebylex", "zremrangebylex", "zscan", "zscan_iter",
    ),
    "lists": ("rpush", "rpushx", "lrange", "llen", "lindex", "ltrim", "lpop"),
    # r.pipeline() / r.transaction(fn, *keys); the pipeline's own controls are below.
    "pipelines": ("pipeline", "transaction"),
}  # fmt: skip
PIPELINE_CONTROLS = frozenset({"execute", "multi", "watch", "unwatch", "reset", "discard"})
PIPELINE_ATTRIBUTES = frozenset({"watching"})  # documented state of a redis-py Pipeline

# The same scope as the commands a server receives (audited on the redis-server target).
SERVER_COMMANDS: dict[str, tuple[str, ...]] = {
    "keys": (
        "TYPE", "EXISTS", "DEL", "UNLINK", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT",
        "EXPIRETIME", "PEXPIRETIME", "TTL", "PTTL", "PERSIST", "KEYS", "SCAN", "RENAME",
        "RENAMENX", "FLUSHDB", "DBSIZE", "TIME",
    ),
    "strings": (
        "GET", "SET", "SETNX", "SETEX", "PSETEX", "GETSET", "GETDEL", "GETEX", "MGET", "MSET",
        "MSETNX", "APPEND", "STRLEN", "GETRANGE", "SETRANGE", "INCR", "INCRBY", "DECR",
        "DECRBY", "INCRBYFLOAT",
    ),
    "hashes": (
        "HSET", "HGET", "HMGET", "HGETALL", "HDEL", "HEXISTS", "HLEN", "HKEYS", "HVALS",
        "HINCRBY", "HINCRBYFLOAT", "HSETNX", "HSCAN", "HSTRLEN", "HMSET",
    ),
    "sets": (
        "SADD", "SREM", "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "SPOP", "SSCAN",
        "SINTER", "SUNION", "SDIFF", "SRANDMEMBER", "SMOVE", "SINTERSTORE", "SUNIONSTORE",
        "SDIFFSTORE",
    ),
    "zsets": (
        "ZADD", "ZREM", "ZSCORE", "ZINCRBY", "ZCARD", "ZCOUNT", "ZRANGE", "ZRANGEBYSCORE",
        "ZREVRANGE", "ZREVRANGEBYSCORE", "ZRANK", "ZREVRANK", "ZREMRANGEBYSCORE",
        "ZREMRANGEBYRANK", "ZPOPMIN", "ZPOPMAX", "ZMSCORE", "ZLEXCOUNT", "ZRANGEBYLEX",
        "ZREVRANGEBYLEX", "ZREMRANGEBYLEX", "ZSCAN",
    ),
    "lists": ("RPUSH", "RPUSHX", "LRANGE", "LLEN", "LINDEX", "LTRIM", "LPOP"),
    "pipelines": ("MULTI", "EXEC", "WATCH", "UNWATCH", "DISCARD"),
}  # fmt: skip

# The Redis whose semantics the kvstore face follows: redis-py's version-gated markers
# evaluate as for this server on the kvstore targets, and a test gated beyond it (or
# only for servers older than it) is out of scope.
KVSTORE_REDIS_VERSION = "7.4.0"

# redis-py's test files, by run mode.
REDISPY_FILES: dict[str, tuple[str, ...]] = {
    "sync": ("tests/test_commands.py", "tests/test_pipeline.py"),
    "async": ("tests/test_asyncio/test_commands.py", "tests/test_asyncio/test_pipeline.py"),
}

# -- the selection -----------------------------------------------------------------------------

# The redis-py version whose test files SELECTED and EXCLUDED were written from. For
# another version the analysis still runs and the report says what drifted, but a
# selected test that is gone, or a new in-scope test, does not fail test_scope_report.
SELECTION_WRITTEN_FOR = "8.1.0"

# file -> family -> "Class::test" names. Every test of the file whose commands are all in
# SCOPE (per analyze_file), minus EXCLUDED.
SELECTED: dict[str, dict[str, tuple[str, ...]]] = {
    "tests/test_commands.py": {
        "keys": (
            "TestRedisCommands::test_dbsize",
            "TestRedisCommands::test_delete",
            "TestRedisCommands::test_delete_with_multiple_keys",
            "TestRedisCommands::test_delitem",
            "TestRedisCommands::test_unlink",
            "TestRedisCommands::test_unlink_with_multiple_keys",
            "TestRedisCommands::test_exists",
            "TestRedisCommands::test_exists_contains",
            "TestRedisCommands::test_expire",
            "TestRedisCommands::test_expire_option_nx",
            "TestRedisCommands::test_expire_option_xx",
            "TestRedisCommands::test_expire_option_gt",
            "TestRedisCommands::test_expire_option_lt",
            "TestRedisCommands::test_expiretime",
            "TestRedisCommands::test_keys",
            "TestRedisCommands::test_pexpire",
            "TestRedisCommands::test_pexpire_option_nx",
            "TestRedisCommands::test_pexpire_option_xx",
            "TestRedisCommands::test_pexpire_option_gt",
            "TestRedisCommands::test_pexpire_option_lt",
            "TestRedisCommands::test_pexpiretime",
            "TestRedisCommands::test_pttl",
            "TestRedisCommands::test_pttl_no_key",
            "TestRedisCommands::test_rename",
            "TestRedisCommands::test_renamenx",
            "TestRedisCommands::test_ttl",
            "TestRedisCommands::test_ttl_nokey",
            "TestRedisCommands::test_scan",
            "TestRedisCommands::test_scan_iter",
            "TestRedisCommands::test_expireat_datetime",
            "TestRedisCommands::test_expireat_no_key",
            "TestRedisCommands::test_expireat_unixtime",
            "TestRedisCommands::test_expireat_option_nx",
            "TestRedisCommands::test_expireat_option_xx",
            "TestRedisCommands::test_expireat_option_gt",
            "TestRedisCommands::test_expireat_option_lt",
            "TestRedisCommands::test_pexpireat_datetime",
            "TestRedisCommands::test_pexpireat_no_key",
            "TestRedisCommands::test_pexpireat_unixtime",
            "TestRedisCommands::test_pexpireat_option_nx",
            "TestRedisCommands::test_pexpireat_option_xx",
            "TestRedisCommands::test_pexpireat_option_gt",
            "TestRedisCommands::test_pexpireat_option_lt",
            "TestRedisCommands::test_time",
        ),
        "strings": (
            "TestRedisCommands::test_getex",
            "TestRedisCommands::test_set_exat_timedelta",
            "TestRedisCommands::test_set_pxat_timedelta",
            "TestRedisCommands::test_append",
            "TestRedisCommands::test_decr",
            "TestRedisCommands::test_decrby",
            "TestRedisCommands::test_get_and_set",
            "TestRedisCommands::test_getdel",
            "TestRedisCommands::test_getex_zero_expiry_options_are_mutually_exclusive",
            "TestRedisCommands::test_getitem_and_setitem",
            "TestRedisCommands::test_getitem_raises_keyerror_for_missing_key",
            "TestRedisCommands::test_getitem_does_not_raise_keyerror_for_empty_string",
            "TestRedisCommands::test_getrange",
            "TestRedisCommands::test_getset",
            "TestRedisCommands::test_incr",
            "TestRedisCommands::test_incrby",
            "TestRedisCommands::test_incrbyfloat",
            "TestRedisCommands::test_mget",
            "TestRedisCommands::test_mset",
            "TestRedisCommands::test_msetnx",
            "TestRedisCommands::test_psetex",
            "TestRedisCommands::test_psetex_timedelta",
            "TestRedisCommands::test_set_nx",
            "TestRedisCommands::test_set_xx",
            "TestRedisCommands::test_set_px",
            "TestRedisCommands::test_set_px_timedelta",
            "TestRedisCommands::test_set_ex",
            "TestRedisCommands::test_set_zero_expiry_options_are_mutually_exclusive",
            "TestRedisCommands::test_set_ex_str",
            "TestRedisCommands::test_set_ex_timedelta",
            "TestRedisCommands::test_set_multipleoptions",
            "TestRedisCommands::test_set_keepttl",
            "TestRedisCommands::test_set_empty_condition_is_mutually_exclusive",
            "TestRedisCommands::test_set_get",
            "TestRedisCommands::test_setex",
            "TestRedisCommands::test_setnx",
            "TestRedisCommands::test_setrange",
            "TestRedisCommands::test_strlen",
            "TestBinarySave::test_binary_get_set",
            "TestBinarySave::test_large_responses",
        ),
        "hashes": (
            "TestRedisCommands::test_hscan",
            "TestRedisCommands::test_hscan_novalues",
            "TestRedisCommands::test_hscan_iter",
            "TestRedisCommands::test_hscan_iter_novalues",
            "TestRedisCommands::test_hget_and_hset",
            "TestRedisCommands::test_hget_and_hset_with_encodable_fields_and_values",
            "TestRedisCommands::test_hset_with_multi_key_values",
            "TestRedisCommands::test_hset_with_key_values_passed_as_list",
            "TestRedisCommands::test_hset_without_data",
            "TestRedisCommands::test_hdel",
            "TestRedisCommands::test_hexists",
            "TestRedisCommands::test_hgetall",
            "TestRedisCommands::test_hincrby",
            "TestRedisCommands::test_hincrbyfloat",
            "TestRedisCommands::test_hkeys",
            "TestRedisCommands::test_hlen",
            "TestRedisCommands::test_hmget",
            "TestRedisCommands::test_hmset",
            "TestRedisCommands::test_hsetnx",
            "TestRedisCommands::test_hvals",
            "TestRedisCommands::test_hstrlen",
        ),
        "sets": (
            "TestRedisCommands::test_sscan",
            "TestRedisCommands::test_sscan_iter",
            "TestRedisCommands::test_sadd",
            "TestRedisCommands::test_scard",
            "TestRedisCommands::test_sdiff",
            "TestRedisCommands::test_sdiffstore",
            "TestRedisCommands::test_sinter",
            "TestRedisCommands::test_sinterstore",
            "TestRedisCommands::test_sismember",
            "TestRedisCommands::test_smembers",
            "TestRedisCommands::test_smismember",
            "TestRedisCommands::test_smove",
            "TestRedisCommands::test_spop",
            "TestRedisCommands::test_spop_multi_value",
            "TestRedisCommands::test_srandmember",
            "TestRedisCommands::test_srandmember_multi_value",
            "TestRedisCommands::test_srem",
            "TestRedisCommands::test_sunion",
            "TestRedisCommands::test_sunionstore",
        ),
        "zsets": (
            "TestRedisCommands::test_zscan",
            "TestRedisCommands::test_zscan_iter",
            "TestRedisCommands::test_zrevrangebylex",
            "TestRedisCommands::test_zremrangebylex",
            "TestRedisCommands::test_zadd",
            "TestRedisCommands::test_zadd_nx",
            "TestRedisCommands::test_zadd_xx",
            "TestRedisCommands::test_zadd_ch",
            "TestRedisCommands::test_zadd_incr",
            "TestRedisCommands::test_zadd_incr_with_xx",
            "TestRedisCommands::test_zadd_gt_lt",
            "TestRedisCommands::test_zcard",
            "TestRedisCommands::test_zcount",
            "TestRedisCommands::test_zincrby",
            "TestRedisCommands::test_zlexcount",
            "TestRedisCommands::test_zpopmax",
            "TestRedisCommands::test_zpopmin",
            "TestRedisCommands::test_zrange",
            "TestRedisCommands::test_zrange_errors",
            "TestRedisCommands::test_zrange_params",
            "TestRedisCommands::test_zrangebylex",
            "TestRedisCommands::test_zrangebyscore",
            "TestRedisCommands::test_zrank",
            "TestRedisCommands::test_zrank_withscore",
            "TestRedisCommands::test_zrem",
            "TestRedisCommands::test_zrem_multiple_keys",
            "TestRedisCommands::test_zremrangebyrank",
            "TestRedisCommands::test_zremrangebyscore",
            "TestRedisCommands::test_zrevrange",
            "TestRedisCommands::test_zrevrangebyscore",
            "TestRedisCommands::test_zrevrank",
            "TestRedisCommands::test_zrevrank_withscore",
            "TestRedisCommands::test_zscore",
            "TestRedisCommands::test_zmscore",
            "TestBinarySave::test_floating_point_encoding",
        ),
        "lists": (
            "TestRedisCommands::test_lindex",
            "TestRedisCommands::test_llen",
            "TestRedisCommands::test_lpop",
            "TestRedisCommands::test_lpop_count",
            "TestRedisCommands::test_lrange",
            "TestRedisCommands::test_ltrim",
            "TestRedisCommands::test_rpush",
            "TestRedisCommands::test_rpushx",
            "TestBinarySave::test_binary_lists",
        ),
    },
    "tests/test_pipeline.py": {
        "pipelines": (
            "TestPipeline::test_pipeline_is_true",
            "TestPipeline::test_pipeline",
            "TestPipeline::test_pipeline_memoryview",
            "TestPipeline::test_pipeline_length",
            "TestPipeline::test_pipeline_no_transaction",
            "TestPipeline::test_pipeline_no_transaction_watch",
            "TestPipeline::test_pipeline_no_transaction_watch_failure",
            "TestPipeline::test_transaction_with_empty_error_command",
            "TestPipeline::test_pipeline_with_empty_error_command",
            "TestPipeline::test_parse_error_raised",
            "TestPipeline::test_parse_error_raised_transaction",
            "TestPipeline::test_watch_succeed",
            "TestPipeline::test_watch_failure",
            "TestPipeline::test_watch_failure_in_empty_transaction",
            "TestPipeline::test_unwatch",
            "TestPipeline::test_transaction_callable",
            "TestPipeline::test_transaction_callable_returns_value_from_callable",
            "TestPipeline::test_exec_error_in_no_transaction_pipeline",
            "TestPipeline::test_exec_error_in_no_transaction_pipeline_unicode_command",
            "TestPipeline::test_exec_error_in_pipeline_truncated",
            "TestPipeline::test_pipeline_discard",
            "TestPipeline::test_send_set_commands_over_pipeline",
        ),
    },
    "tests/test_asyncio/test_commands.py": {
        "keys": (
            "TestRedisCommands::test_dbsize",
            "TestRedisCommands::test_delete",
            "TestRedisCommands::test_delete_with_multiple_keys",
            "TestRedisCommands::test_delitem",
            "TestRedisCommands::test_unlink",
            "TestRedisCommands::test_unlink_with_multiple_keys",
            "TestRedisCommands::test_exists",
            "TestRedisCommands::test_exists_contains",
            "TestRedisCommands::test_expire",
            "TestRedisCommands::test_keys",
            "TestRedisCommands::test_pexpire",
            "TestRedisCommands::test_pttl",
            "TestRedisCommands::test_pttl_no_key",
            "TestRedisCommands::test_rename",
            "TestRedisCommands::test_renamenx",
            "TestRedisCommands::test_ttl",
            "TestRedisCommands::test_ttl_nokey",
            "TestRedisCommands::test_scan",
            "TestRedisCommands::test_scan_iter",
            "TestRedisCommands::test_expireat_datetime",
            "TestRedisCommands::test_expireat_no_key",
            "TestRedisCommands::test_expireat_unixtime",
            "TestRedisCommands::test_pexpireat_datetime",
            "TestRedisCommands::test_pexpireat_no_key",
            "TestRedisCommands::test_pexpireat_unixtime",
            "TestRedisCommands::test_time",
        ),
        "strings": (
            "TestRedisCommands::test_append",
            "TestRedisCommands::test_decr",
            "TestRedisCommands::test_decrby",
            "TestRedisCommands::test_get_and_set",
            "TestRedisCommands::test_getex_zero_expiry_options_are_mutually_exclusive",
            "TestRedisCommands::test_getrange",
            "TestRedisCommands::test_getset",
            "TestRedisCommands::test_incr",
            "TestRedisCommands::test_incrby",
            "TestRedisCommands::test_incrbyfloat",
            "TestRedisCommands::test_mget",
            "TestRedisCommands::test_mset",
            "TestRedisCommands::test_msetnx",
            "TestRedisCommands::test_psetex",
            "TestRedisCommands::test_psetex_timedelta",
            "TestRedisCommands::test_set_nx",
            "TestRedisCommands::test_set_xx",
            "TestRedisCommands::test_set_px",
            "TestRedisCommands::test_set_px_timedelta",
            "TestRedisCommands::test_set_ex",
            "TestRedisCommands::test_set_zero_expiry_options_are_mutually_exclusive",
            "TestRedisCommands::test_set_ex_timedelta",
            "TestRedisCommands::test_set_multipleoptions",
            "TestRedisCommands::test_set_keepttl",
            "TestRedisCommands::test_set_empty_condition_is_mutually_exclusive",
            "TestRedisCommands::test_setex",
            "TestRedisCommands::test_setnx",
            "TestRedisCommands::test_setrange",
            "TestRedisCommands::test_strlen",
            "TestBinarySave::test_binary_get_set",
            "TestBinarySave::test_large_responses",
        ),
        "hashes": (
            "TestRedisCommands::test_hscan",
            "TestRedisCommands::test_hscan_novalues",
            "TestRedisCommands::test_hscan_iter",
            "TestRedisCommands::test_hscan_iter_novalues",
            "TestRedisCommands::test_hget_and_hset",
            "TestRedisCommands::test_hget_and_hset_with_encodable_fields_and_values",
            "TestRedisCommands::test_hset_with_multi_key_values",
            "TestRedisCommands::test_hset_without_data",
            "TestRedisCommands::test_hdel",
            "TestRedisCommands::test_hexists",
            "TestRedisCommands::test_hgetall",
            "TestRedisCommands::test_hincrby",
            "TestRedisCommands::test_hincrbyfloat",
            "TestRedisCommands::test_hkeys",
            "TestRedisCommands::test_hlen",
            "TestRedisCommands::test_hmget",
            "TestRedisCommands::test_hmset",
            "TestRedisCommands::test_hsetnx",
            "TestRedisCommands::test_hvals",
            "TestRedisCommands::test_hstrlen",
        ),
        "sets": (
            "TestRedisCommands::test_sscan",
            "TestRedisCommands::test_sscan_iter",
            "TestRedisCommands::test_sadd",
            "TestRedisCommands::test_scard",
            "TestRedisCommands::test_sdiff",
            "TestRedisCommands::test_sdiffstore",
            "TestRedisCommands::test_sinter",
            "TestRedisCommands::test_sinterstore",
            "TestRedisCommands::test_sismember",
            "TestRedisCommands::test_smembers",
            "TestRedisCommands::test_smove",
            "TestRedisCommands::test_spop",
            "TestRedisCommands::test_spop_multi_value",
            "TestRedisCommands::test_srandmember",
            "TestRedisCommands::test_srandmember_multi_value",
            "TestRedisCommands::test_srem",
            "TestRedisCommands::test_sunion",
            "TestRedisCommands::test_sunionstore",
        ),
        "zsets": (
            "TestRedisCommands::test_zscan",
            "TestRedisCommands::test_zscan_iter",
            "TestRedisCommands::test_zrevrangebylex",
            "TestRedisCommands::test_zremrangebylex",
            "TestRedisCommands::test_zadd",
            "TestRedisCommands::test_zadd_nx",
            "TestRedisCommands::test_zadd_xx",
            "TestRedisCommands::test_zadd_ch",
            "TestRedisCommands::test_zadd_incr",
            "TestRedisCommands::test_zadd_incr_with_xx",
            "TestRedisCommands::test_zcard",
            "TestRedisCommands::test_zcount",
            "TestRedisCommands::test_zincrby",
            "TestRedisCommands::test_zlexcount",
            "TestRedisCommands::test_zpopmax",
            "TestRedisCommands::test_zpopmin",
            "TestRedisCommands::test_zrange",
            "TestRedisCommands::test_zrangebylex",
            "TestRedisCommands::test_zrangebyscore",
            "TestRedisCommands::test_zrank",
            "TestRedisCommands::test_zrank_withscore",
            "TestRedisCommands::test_zrem",
            "TestRedisCommands::test_zrem_multiple_keys",
            "TestRedisCommands::test_zremrangebyrank",
            "TestRedisCommands::test_zremrangebyscore",
            "TestRedisCommands::test_zrevrange",
            "TestRedisCommands::test_zrevrangebyscore",
            "TestRedisCommands::test_zrevrank",
            "TestRedisCommands::test_zrevrank_withscore",
            "TestRedisCommands::test_zscore",
            "TestBinarySave::test_floating_point_encoding",
        ),
        "lists": (
            "TestRedisCommands::test_lindex",
            "TestRedisCommands::test_llen",
            "TestRedisCommands::test_lpop",
            "TestRedisCommands::test_lrange",
            "TestRedisCommands::test_ltrim",
            "TestRedisCommands::test_rpush",
            "TestRedisCommands::test_rpushx",
            "TestBinarySave::test_binary_lists",
        ),
    },
    "tests/test_asyncio/test_pipeline.py": {
        "pipelines": (
            "TestPipeline::test_pipeline_is_true",
            "TestPipeline::test_pipeline",
            "TestPipeline::test_pipeline_memoryview",
            "TestPipeline::test_pipeline_length",
            "TestPipeline::test_pipeline_no_transaction",
            "TestPipeline::test_pipeline_no_transaction_watch",
            "TestPipeline::test_pipeline_no_transaction_watch_failure",
            "TestPipeline::test_transaction_with_empty_error_command",
            "TestPipeline::test_pipeline_with_empty_error_command",
            "TestPipeline::test_parse_error_raised",
            "TestPipeline::test_parse_error_raised_transaction",
            "TestPipeline::test_watch_succeed",
            "TestPipeline::test_watch_failure",
            "TestPipeline::test_watch_failure_in_empty_transaction",
            "TestPipeline::test_unwatch",
            "TestPipeline::test_transaction_callable",
            "TestPipeline::test_transaction_callable_returns_value_from_callable",
            "TestPipeline::test_exec_error_in_no_transaction_pipeline",
            "TestPipeline::test_exec_error_in_no_transaction_pipeline_unicode_command",
            "TestPipeline::test_exec_error_in_pipeline_truncated",
            "TestPipeline::test_pipeline_get",
            "TestPipeline::test_pipeline_discard",
            "TestPipeline::test_send_set_commands_over_async_pipeline",
        ),
    },
}

# Tests whose commands are all in scope but that are deliberately not run, with why.
EXCLUDED: dict[str, dict[str, str]] = {}

# Selected tests expected to fail: target ("*" = every target, "kvstore-*" = every kvstore
# target) -> "file::Class::test" -> reason. Applied as strict xfails (an unexpected pass fails too).
CROSS_KEY = (
    "a transaction over several keys: kvstore refuses it with CROSSSLOT, as Redis Cluster "
    "does (each key is one object; no compare-and-swap spans two) - README, 'The Redis face'"
)
LTRIM_TAIL = (
    "LTRIM that drops records at the tail: a kvstore list is an append log, so it is "
    "refused with a clear error (LTRIM key start -1 works) - README, 'The Redis face'"
)
XFAIL: dict[str, dict[str, str]] = {
    "kvstore-*": {
        **{
            f"{file}::TestPipeline::{test}": CROSS_KEY
            for file in ("tests/test_pipeline.py", "tests/test_asyncio/test_pipeline.py")
            for test in (
                "test_pipeline",
                "test_pipeline_discard",
                "test_pipeline_length",
                "test_transaction_callable",
                "test_transaction_with_empty_error_command",
                "test_watch_failure",
                "test_watch_failure_in_empty_transaction",
                "test_watch_succeed",
            )
        },
        "tests/test_commands.py::TestRedisCommands::test_ltrim": LTRIM_TAIL,
        "tests/test_asyncio/test_commands.py::TestRedisCommands::test_ltrim": LTRIM_TAIL,
    }
}

# -- targets -----------------------------------------------------------------------------------

REDIS_SERVER_TARGET = "redis-server"
KVSTORE_TARGETS = (
    "kvstore-memory",
    "kvstore-local",
    "kvstore-seaweedfs",
    "kvstore-memory+redis-cache",
)
TARGETS = (REDIS_SERVER_TARGET, *KVSTORE_TARGETS)

# Factories (tests/redispy_plugin.py), as "module:function", per target kind and mode.
FACTORIES = {
    (REDIS_SERVER_TARGET, "sync"): "redispy_plugin:redis_server_client",
    (REDIS_SERVER_TARGET, "async"): "redispy_plugin:redis_server_async_client",
    ("kvstore", "sync"): "redispy_plugin:kvstore_client",
    ("kvstore", "async"): "redispy_plugin:kvstore_async_client",
}


def kvstore_redis_arguments(target: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """THE hook for the kvstore targets: the keyword arguments (JSON-able) that
    ``kvstore.Redis(...)`` / ``kvstore.AsyncRedis(...)`` are opened with in the subprocess,
    besides ``decode_responses`` (see redispy_plugin.kvstore_client). Every client of one
    run gets the same arguments, so ``r`` and ``r2`` see one store; redis-py's fixtures
    flush it after each test."""
    unique = uuid.uuid4().hex[:12]
    if target == "kvstore-memory":
        return {"url": f"memory://redispy-{unique}", "cache": None}
    if target == "kvstore-local":
        tmp = request.getfixturevalue("tmp_path_factory").mktemp("redispy-local")
        return {"url": str(tmp / unique), "cache": None}
    if target == "kvstore-seaweedfs":
        server = request.getfixturevalue("seaweedfs_server")  # tests/conftest.py
        return {
            "url": server.url_for("kvstore-test", f"redispy-{unique}"),
            "storage_options": server.storage_options,
            "cache": None,
        }
    if target == "kvstore-memory+redis-cache":
        redis_server = request.getfixturevalue("redispy_redis_server")
        return {"url": f"memory://redispy-{unique}", "cache": redis_server.url}
    raise ValueError(f"unknown kvstore target {target!r}")


# -- the static analysis of redis-py's test files ---------------------------------------------

METHOD_FAMILY = {method: family for family, methods in SCOPE.items() for method in methods}
SCOPE_METHODS = frozenset(METHOD_FAMILY)
SCOPE_SERVER_COMMANDS = frozenset(c for cs in SERVER_COMMANDS.values() for c in cs)
CLIENT_FIXTURES = frozenset({"r", "r2", "decoded_r", "r_timeout"})
OK_FIXTURES = frozenset({"request", "create_redis"})
# Functions a client may be handed without issuing commands of their own.
OK_HELPERS = frozenset({
    "assert_resp_response", "assert_resp_response_in", "expects_resp2_shape",
    "expects_resp3_shape", "expects_unified_shape", "expected_response_shape",
    "is_resp2_connection", "get_protocol_version", "isinstance", "len", "list", "sorted",
    "set", "str", "iter", "enumerate", "tuple", "dict", "next", "anext",
})  # fmt: skip
# Helpers of redis-py's tests that issue a command with the client they are given.
HELPER_COMMANDS = {
    "redis_server_time": "TIME",
    "wait_for_command": "MONITOR",
    "get_stream_message": "XRANGE",
}
CLIENT_CONSTRUCTORS = frozenset({
    "Redis", "StrictRedis", "from_url", "ConnectionPool", "BlockingConnectionPool",
    "RedisCluster", "Sentinel",
})  # fmt: skip
CONTAINER_COMMANDS = frozenset({
    "acl", "client", "cluster", "command", "config", "debug", "function", "hotkeys",
    "latency", "memory", "module", "object", "pubsub", "script", "slowlog", "xgroup", "xinfo",
})  # fmt: skip
NOT_APPLICABLE_MARKS = {
    "onlycluster": "cluster-only test (@onlycluster)",
    "redismod": "needs Redis modules (@redismod)",
    "replica": "needs a replica (@replica)",
}


@dataclass
class RedispyTest:
    """What one redis-py test uses, as far as the source shows."""

    file: str
    name: str  # "Class::test_x"
    line: int
    used: set[str] = field(default_factory=set)  # client methods/attributes (see _Scan)
    reasons: list[str] = field(default_factory=list)  # not applicable, whatever it calls
    min_version: str | None = None  # @skip_if_server_version_lt
    below_version: str | None = None  # @skip_if_server_version_gte

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"

    @property
    def out_of_scope(self) -> list[str]:
        """The out-of-scope commands/APIs it uses, for people (empty: all in scope)."""
        return sorted({describe(u) for u in self.used if not in_scope(u)})

    @property
    def blockers(self) -> list[str]:
        """Everything that keeps it out of the selection (empty: in scope)."""
        return self.reasons + self.out_of_scope

    @property
    def family(self) -> str:
        return family_of(self)


def in_scope(used: str) -> bool:
    if used.startswith("helper:"):  # a helper of redis-py's tests that sends one command
        return HELPER_COMMANDS.get(used.removeprefix("helper:")) in SCOPE_SERVER_COMMANDS
    if used.startswith("pipeline."):
        return used.removeprefix("pipeline.") in PIPELINE_CONTROLS | PIPELINE_ATTRIBUTES
    return used in SCOPE_METHODS


def _is_command_method(method: str) -> bool:
    import redis

    owner = next((c for c in redis.Redis.__mro__ if method in c.__dict__), None)
    return owner is not None and owner.__module__.startswith("redis.commands")


def describe(used: str) -> str:
    """``lpush`` -> ``LPUSH``; ``client_list`` -> ``CLIENT LIST``; others spelled out."""
    kind, _, what = used.partition(":")
    if kind == "helper":
        command = HELPER_COMMANDS.get(what)
        return f"{command} (via {what}())" if command else f"client handed to {what}()"
    if kind == "construct":
        return f"builds its own client: {what}()"
    if kind == "raw":
        return f"redis-py client API .execute_command({what.upper()!r}, ...)"
    if kind == "attr":
        return f"redis-py client attribute .{what}"
    method = used.removeprefix("pipeline.")
    if not _is_command_method(method):
        return f"redis-py client API .{method}()"
    head, _, rest = method.removesuffix("_iter").partition("_")
    if rest and head in CONTAINER_COMMANDS:
        return f"{head.upper()} {rest.upper().replace('_', ' ')}"
    return method.removesuffix("_iter").upper()


def family_of(test: RedispyTest) -> str:
    if test.file.endswith("test_pipeline.py"):
        return "pipelines"
    short = test.name.rpartition("::")[2].removeprefix("test_")
    aliases = {"getitem": "strings", "setitem": "strings", "delitem": "keys"}
    candidates = [m for m in [*SCOPE_METHODS, *aliases] if short == m or short.startswith(m + "_")]
    if candidates:
        best = max(candidates, key=len)
        return aliases.get(best) or METHOD_FAMILY[best]
    counts = Counter(METHOD_FAMILY[u] for u in test.used if u in METHOD_FAMILY)
    counts.pop("keys", None)  # DEL, KEYS, ... are set-up and clean-up everywhere
    if counts:
        order = list(SCOPE)
        return max(counts, key=lambda f: (counts[f], -order.index(f)))
    return "keys"


def _decorator(node: ast.expr) -> tuple[str, list[Any]]:
    func = node.func if isinstance(node, ast.Call) else node
    args = (
        [a.value for a in node.args if isinstance(a, ast.Constant)]
        if isinstance(node, ast.Call)
        else []
    )
    return ast.unparse(func).rpartition(".")[2], args


class _Scan:
    """One test function: which names hold clients/pipelines, and what is done with them.

    ``used`` entries: ``method`` (called on a client or pipeline-chained call),
    ``pipeline.method`` / ``pipeline.attr`` (on a pipeline), ``attr:name`` (other
    attributes read off a client), ``raw:NAME`` (``execute_command("NAME", ...)``),
    ``helper:func`` (a client handed to a function), ``construct:expr`` (a client built
    by hand), and the dunders of SCOPE.
    """

    def __init__(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, clients: set[str]) -> None:
        self.fn = fn
        self.clients = set(clients)
        self.pipes: set[str] = set()
        self.used: set[str] = set()
        self._bind_names()
        self._walk()

    @staticmethod
    def _unwrap(node: ast.expr) -> ast.expr:
        return node.value if isinstance(node, ast.Await) else node

    def is_client(self, node: ast.expr) -> bool:
        node = self._unwrap(node)
        if isinstance(node, ast.Name):
            return node.id in self.clients or node.id in self.pipes
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, receiver = node.func.attr, node.func.value
            if method in ("pipeline", "client") and self.is_client(receiver):
                return True
            return self.is_pipe(receiver) and method not in PIPELINE_CONTROLS
        return False

    def is_pipe(self, node: ast.expr) -> bool:
        node = self._unwrap(node)
        if isinstance(node, ast.Name):
            return node.id in self.pipes
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, receiver = node.func.attr, node.func.value
            if method == "pipeline":
                return self.is_client(receiver)
            return self.is_pipe(receiver) and method not in PIPELINE_CONTROLS
        return False

    def _bind_names(self) -> None:
        pairs: list[tuple[ast.expr, ast.expr]] = []
        for node in ast.walk(self.fn):
            if isinstance(node, ast.Assign):
                pairs += [(target, node.value) for target in node.targets]
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                pairs += [(i.optional_vars, i.context_expr) for i in node.items if i.optional_vars]
        changed = True
        while changed:  # to a fixed point: p = r.pipeline(); q = p; ...
            changed = False
            for target, value in pairs:
                if not isinstance(target, ast.Name) or target.id in self.clients | self.pipes:
                    continue
                # Only these bind: a command's result (pipe.get() while watching) is a value.
                value = self._unwrap(value)
                func = value.func if isinstance(value, ast.Call) else None
                name = ast.unparse(func) if func is not None else ""
                method = func.attr if isinstance(func, ast.Attribute) else ""
                receiver = func.value if isinstance(func, ast.Attribute) else None
                if (isinstance(value, ast.Name) and value.id in self.pipes) or (
                    method == "pipeline" and receiver is not None and self.is_client(receiver)
                ):
                    self.pipes.add(target.id)
                elif (
                    (isinstance(value, ast.Name) and value.id in self.clients)
                    or name in ("_get_client", "create_redis")
                    or name.rpartition(".")[2] in CLIENT_CONSTRUCTORS
                    or (method == "client" and receiver is not None and self.is_client(receiver))
                ):
                    self.clients.add(target.id)
                else:
                    continue
                changed = True

    def _walk(self) -> None:
        called: set[int] = set()
        for node in ast.walk(self.fn):
            if isinstance(node, ast.Call):
                self._call(node, called)
            elif isinstance(node, ast.Subscript) and self.is_client(node.value):
                kinds = {ast.Load: "__getitem__", ast.Store: "__setitem__", ast.Del: "__delitem__"}
                self.used.add(kinds[type(node.ctx)])
            elif isinstance(node, ast.Compare):
                for op, right in zip(node.ops, node.comparators, strict=True):
                    if isinstance(op, (ast.In, ast.NotIn)) and self.is_client(right):
                        self.used.add("__contains__")
        for node in ast.walk(self.fn):
            if isinstance(node, ast.Attribute) and id(node) not in called:
                if self.is_pipe(node.value):
                    self.used.add(f"pipeline.{node.attr}")
                elif self.is_client(node.value):
                    self.used.add(f"attr:{node.attr}")

    def _call(self, node: ast.Call, called: set[int]) -> None:
        func = node.func
        on_client = isinstance(func, ast.Attribute) and self.is_client(func.value)
        if isinstance(func, ast.Attribute) and on_client:
            called.add(id(func))
            method = func.attr
            first = node.args[0] if node.args else None
            if method == "execute_command" and isinstance(first, ast.Constant):
                self.used.add(f"raw:{first.value}")
            elif self.is_pipe(func.value) and method in PIPELINE_CONTROLS:
                self.used.add(f"pipeline.{method}")
            else:
                self.used.add(method)
        name = ast.unparse(func)
        short = name.rpartition(".")[2]
        if short in CLIENT_CONSTRUCTORS:
            self.used.add(f"construct:{name}")
        if on_client or short in OK_HELPERS:
            return
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if self.is_client(arg):
                self.used.add(f"helper:{name}")


def analyze_file(root: Path, file: str) -> list[RedispyTest]:
    """Every test function of ``root/file``, in file order, with what it uses."""
    tree = ast.parse((root / file).read_text(encoding="utf-8"))
    tests: list[RedispyTest] = []

    def visit(fn: ast.FunctionDef | ast.AsyncFunctionDef, prefix: str, marks: list[Any]) -> None:
        decorators = [_decorator(d) for d in fn.decorator_list] + marks
        test = RedispyTest(file, prefix + fn.name, fn.lineno)
        params = set()
        for name, args in decorators:
            if name == "parametrize" and args and isinstance(args[0], str):
                params |= {p.strip() for p in args[0].split(",")}
            elif name in NOT_APPLICABLE_MARKS:
                test.reasons.append(NOT_APPLICABLE_MARKS[name])
            elif name == "skip_if_server_version_lt" and args:
                test.min_version = max([str(args[0]), test.min_version or "0"], key=Version)
            elif name == "skip_if_server_version_gte" and args:
                test.below_version = str(args[0])
        argnames = [a.arg for a in fn.args.args if a.arg != "self"]
        for arg in argnames:
            if arg not in CLIENT_FIXTURES | OK_FIXTURES | params:
                test.reasons.append(f"fixture {arg}")
        scan = _Scan(fn, {a for a in argnames if a in CLIENT_FIXTURES})
        test.used = scan.used
        if not test.used:
            test.reasons.append("sends no command (a unit test of redis-py itself)")
        if test.min_version and Version(test.min_version) > Version(KVSTORE_REDIS_VERSION):
            test.reasons.append(
                f"needs Redis >= {test.min_version} (scope: Redis {KVSTORE_REDIS_VERSION})"
            )
        if test.below_version and Version(test.below_version) <= Version(KVSTORE_REDIS_VERSION):
            test.reasons.append(f"only for Redis < {test.below_version}")
        tests.append(test)

    def is_test(node: ast.stmt) -> TypeGuard[ast.FunctionDef | ast.AsyncFunctionDef]:
        functions = (ast.FunctionDef, ast.AsyncFunctionDef)
        return isinstance(node, functions) and node.name.startswith("test")

    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            marks = [_decorator(d) for d in node.decorator_list]
            for fn in node.body:
                if is_test(fn):
                    visit(fn, f"{node.name}::", marks)
        elif is_test(node):
            visit(node, "", [])
    return tests


@dataclass
class Analysis:
    """The analysis of all of REDISPY_FILES, checked against SELECTED and EXCLUDED."""

    version: str
    tests: dict[str, list[RedispyTest]]  # file -> tests

    @classmethod
    def of(cls, root: Path, version: str) -> Analysis:
        files = [f for fs in REDISPY_FILES.values() for f in fs]
        return cls(version, {f: analyze_file(root, f) for f in files})

    def selected(self, file: str) -> set[str]:
        return {name for names in SELECTED.get(file, {}).values() for name in names}

    def problems(self) -> list[str]:
        """Disagreements between SELECTED/EXCLUDED and the analysis."""
        out = []
        for file, tests in self.tests.items():
            by_name = {t.name: t for t in tests}
            chosen, excluded = self.selected(file), EXCLUDED.get(file, {})
            for name in sorted(chosen | set(excluded)):
                if name not in by_name:
                    out.append(f"{file}::{name}: listed here but not in redis-py {self.version}")
            for name in sorted(chosen & set(excluded)):
                out.append(f"{file}::{name}: both SELECTED and EXCLUDED")
            for test in tests:
                if test.name in chosen and test.blockers:
                    out.append(f"{test.id}: SELECTED but {'; '.join(test.blockers)}")
                elif not test.blockers and test.name not in chosen | set(excluded):
                    out.append(f"{test.id}: all in scope, but neither SELECTED nor EXCLUDED")
        return out

    def select_ids(self, mode: str) -> list[str]:
        """``file::Class::test`` of the SELECTED tests of one mode that exist."""
        return [
            t.id for f in REDISPY_FILES[mode] for t in self.tests[f] if t.name in self.selected(f)
        ]

    def report(self) -> str:
        """The scope report (markdown)."""
        lines = [
            f"# redis-py {self.version} test suite: what kvstore's harness runs",
            "",
            "Generated by tests/test_redispy_suite.py from redis-py's source distribution; "
            "do not edit.",
            "Regenerate: `PYTHONPATH=. python tests/test_redispy_suite.py --write-report`.",
            "",
            f"In scope: the commands below, Redis {KVSTORE_REDIS_VERSION} semantics "
            "(redis-py tests gated beyond it are out of scope).",
            "",
        ]
        lines += [f"- {family}: {' '.join(cmds)}" for family, cmds in SERVER_COMMANDS.items()]
        lines += ["", "## Selected", "", "| file | " + " | ".join(SCOPE) + " | total |"]
        lines += ["|---" * (len(SCOPE) + 2) + "|"]
        for file, tests in self.tests.items():
            chosen = self.selected(file)
            counts = Counter(t.family for t in tests if t.name in chosen)
            cells = [str(counts.get(f, 0)) for f in SCOPE]
            lines.append(f"| {file} | {' | '.join(cells)} | {sum(counts.values())} |")
        problems = self.problems()
        if problems:
            lines += ["", "## Disagreements with the analysis", ""]
            lines += [f"- {p}" for p in problems]
        near: dict[str, list[str]] = {}
        for tests in self.tests.values():
            for t in tests:
                if not t.reasons and len(t.out_of_scope) == 1:
                    near.setdefault(t.out_of_scope[0], []).append(t.id)
        lines += ["", "## One command away", "", "Tests whose only out-of-scope use is:", ""]
        for what, ids in sorted(near.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            lines.append(f"- {what}: {len(ids)} tests")
        lines += ["", "## Not selected, and why", ""]
        for file, tests in self.tests.items():
            chosen = self.selected(file)
            excluded = EXCLUDED.get(file, {})
            rest = [t for t in tests if t.name not in chosen]
            lines += [f"### {file} ({len(rest)} of {len(tests)} tests)", ""]
            for t in rest:
                why = t.blockers or [f"excluded: {excluded.get(t.name, 'NOT LISTED')}"]
                lines.append(f"- {t.name} (line {t.line}): {'; '.join(why)}")
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"


# -- redis-py's source distribution -----------------------------------------------------------


def redispy_version() -> str:
    import redis

    return str(redis.__version__)


def cache_root() -> Path:
    return Path(
        os.environ.get("KVSTORE_REDISPY_CACHE") or Path(tempfile.gettempdir()) / "kvstore-redispy"
    )


def fetch_redispy_tests(version: str, timeout: float = 600) -> Path:
    """The unpacked ``tests/`` + ``pyproject.toml`` of redis-py ``version``'s sdist, from
    the cache or downloaded into it. Raises RuntimeError (saying why) if it cannot."""
    root = cache_root()
    target = root / f"redis-{version}"
    if (target / ".complete").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"redis-{version}.", dir=root))
    try:
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-binary", ":all:", "--no-deps", "--dest", str(work / "dl"), f"redis=={version}",
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"`pip download` timed out after {timeout}s") from exc
        archives = sorted((work / "dl").glob("redis-*.tar.gz"))
        if done.returncode != 0 or not archives:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"`pip download redis=={version}` failed: {last}")
        unpacked = work / "unpacked"
        prefix = f"redis-{version}/"
        with tarfile.open(archives[0]) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.name.startswith(prefix + "tests/") or m.name == prefix + "pyproject.toml"
            ]
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                tar.extractall(unpacked, members=members, filter="data")
            else:
                tar.extractall(unpacked, members=members)  # names checked above
        (unpacked / prefix / ".complete").write_text(archives[0].name + "\n")
        with contextlib.suppress(OSError):  # another run got there first: keep theirs
            (unpacked / prefix).rename(target)
        if not (target / ".complete").exists():
            raise RuntimeError(f"could not unpack redis-py {version} into {target}")
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def redispy_tests() -> Path:
    """The root of redis-py's unpacked sdist (tests/ and pyproject.toml only)."""
    version = redispy_version()
    try:
        return fetch_redispy_tests(version)
    except RuntimeError as exc:
        pytest.skip(f"redis-py {version}'s test suite is not cached in {cache_root()} and {exc}")


@pytest.fixture(scope="session")
def redispy_analysis(redispy_tests: Path) -> Analysis:
    return Analysis.of(redispy_tests, redispy_version())


@pytest.fixture(scope="session")
def redispy_redis_server() -> Iterator[Any]:
    """A redis-server on a free loopback port ($KVSTORE_REDISPY_REDIS_SERVER: its binary)."""
    from kvstore.testing.servers import RedisServer

    with RedisServer(binary=os.environ.get("KVSTORE_REDISPY_REDIS_SERVER") or None) as server:
        yield server


# -- running redis-py's tests -------------------------------------------------------------------


@dataclass
class Outcome:
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # id -> first line of the message
    skipped: dict[str, str] = field(default_factory=dict)  # id -> reason
    xfailed: dict[str, str] = field(default_factory=dict)

    def counts(self) -> str:
        return (
            f"{len(self.passed)} passed, {len(self.failed)} failed, {len(self.skipped)} skipped, "
            f"{len(self.xfailed)} xfailed"
        )


def parse_junit(path: Path, files: tuple[str, ...]) -> Outcome:
    """Outcomes from pytest's JUnit XML, with ids as ``file::Class::test[params]``."""
    modules = {f.removesuffix(".py").replace("/", "."): f for f in files}
    outcome = Outcome()
    for case in ET.parse(path).getroot().iter("testcase"):
        classname = case.get("classname", "")
        module = max(
            (m for m in modules if classname == m or classname.startswith(m + ".")),
            key=len,
            default="",
        )
        rest = classname[len(module) + 1 :] if module else classname
        test_id = "::".join(
            p for p in (modules.get(module, classname), *rest.split("."), case.get("name", "")) if p
        )
        problems = case.findall("failure") + case.findall("error")
        skipped = case.find("skipped")
        if problems:
            message = problems[0].get("message") or (problems[0].text or "").strip()
            outcome.failed[test_id] = (message.splitlines() or ["?"])[0][:200]
        elif skipped is not None and skipped.get("type") == "pytest.xfail":
            outcome.xfailed[test_id] = skipped.get("message", "")
        elif skipped is not None:
            outcome.skipped[test_id] = skipped.get("message", "")
        else:
            outcome.passed.append(test_id)
    return outcome


def _subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    import kvstore

    # None of the outer run's pytest options, and only the harness settings given here
    # (KVSTORE_REDISPY_TRACEMALLOC=1 passes through: redis-py's tracemalloc fixture back on).
    ours = {v for k, v in vars(redispy_plugin).items() if k.endswith("_ENV")}
    ours.discard(redispy_plugin.TRACEMALLOC_ENV)
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("PYTEST_")}
    # This directory (redispy_plugin) and the kvstore this run imported come first.
    kvstore_root = str(Path(kvstore.__file__).resolve().parent.parent)
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([str(HERE), kvstore_root, *inherited]))
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plugins named below
    env.update(extra)
    return env


def run_redispy(
    root: Path,
    mode: str,
    select: list[str],
    xfail: dict[str, str],
    env: dict[str, str],
    redis_url: str,
    workdir: Path,
    timeout: float = 900,
    args: tuple[str, ...] = (),
) -> tuple[Outcome, dict[str, Any], str, float]:
    """Run the selected tests of one mode; (outcome, plugin stats, output, seconds)."""
    select_file = workdir / "select.json"
    stats_file = workdir / "stats.json"
    junit = workdir / "junit.xml"
    select_file.write_text(json.dumps({"select": select, "xfail": xfail}))
    plugins = ["-p", "redispy_plugin"]
    if importlib.util.find_spec("pytest_timeout") is not None:
        plugins += ["-p", "pytest_timeout"]  # redis-py's pyproject sets timeout = 30
    if mode == "async":
        plugins += ["-p", "pytest_asyncio.plugin"]
    cmd = [
        sys.executable, "-m", "pytest", *plugins, "-p", "no:cacheprovider", "-p", "no:warnings",
        "-q", "-rfE", "-o", "addopts=", f"--junitxml={junit}",
        f"--redis-url={redis_url}", f"--redis-mod-url={redis_url}", *args,
        *REDISPY_FILES[mode],
    ]  # fmt: skip
    env = {**env, redispy_plugin.SELECT_ENV: str(select_file)}
    env[redispy_plugin.STATS_ENV] = str(stats_file)
    started = time.monotonic()
    done = subprocess.run(
        cmd, cwd=root, env=_subprocess_env(env), capture_output=True, text=True, timeout=timeout
    )
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    (workdir / "output.txt").write_text(output)
    if not junit.exists():
        pytest.fail(
            f"redis-py's pytest wrote no results (exit {done.returncode}):\n{output[-4000:]}"
        )
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    return parse_junit(junit, REDISPY_FILES[mode]), stats, output, seconds


def _server_version(server: Any) -> str:
    client = server.client()
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


# -- the tests ---------------------------------------------------------------------------------


def test_scope_report(redispy_analysis: Analysis) -> None:
    """SELECTED/EXCLUDED agree with the analysis, and the committed report is current."""
    report = redispy_analysis.report()
    fresh = cache_root() / f"redis-{redispy_analysis.version}" / "scope-report.md"
    fresh.write_text(report)
    print(f"scope report: {fresh}")
    if redispy_analysis.version != SELECTION_WRITTEN_FOR:
        pytest.skip(
            f"SELECTED was written for redis-py {SELECTION_WRITTEN_FOR}, this is "
            f"{redispy_analysis.version}: see {fresh} for what drifted"
        )
    problems = redispy_analysis.problems()
    assert not problems, "SELECTED/EXCLUDED disagree with the analysis:\n" + "\n".join(problems)
    assert REPORT_PATH.exists() and REPORT_PATH.read_text() == report, (
        f"{REPORT_PATH.name} is stale: `PYTHONPATH=. python tests/test_redispy_suite.py "
        f"--write-report` (fresh copy: {fresh})"
    )


def _xfails(target: str) -> dict[str, str]:
    """The xfails of a target: "*" (every target), "kvstore-*" (every kvstore target), its own."""
    family = XFAIL.get("kvstore-*", {}) if target.startswith("kvstore-") else {}
    return {**XFAIL.get("*", {}), **family, **XFAIL.get(target, {})}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("target", TARGETS)
def test_redispy_suite(
    target: str,
    mode: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """redis-py's selected tests of one mode against one target; all must pass."""
    plugin = redispy_plugin
    extra: dict[str, str] = {}
    if target == REDIS_SERVER_TARGET:
        kind = REDIS_SERVER_TARGET
    else:
        import kvstore

        kind = "kvstore"
        face = "Redis" if mode == "sync" else "AsyncRedis"
        if not hasattr(kvstore, face):
            pytest.skip(f"kvstore.{face} not available")
    if mode == "async" and importlib.util.find_spec("pytest_asyncio") is None:
        pytest.skip("pytest-asyncio is not installed (redis-py's async tests need it)")
    analysis: Analysis = request.getfixturevalue("redispy_analysis")  # may skip: no sdist
    if kind == REDIS_SERVER_TARGET:
        server = request.getfixturevalue("redispy_redis_server")
        redis_url = server.url
        server_version = _server_version(server)
        extra[plugin.REDIS_URL_ENV] = redis_url
        extra[plugin.AUDIT_ENV] = "1"
    else:
        server_version = os.environ.get(plugin.SERVER_VERSION_ENV) or KVSTORE_REDIS_VERSION
        extra[plugin.SERVER_VERSION_ENV] = server_version
        extra[plugin.KVSTORE_ENV] = json.dumps(kvstore_redis_arguments(target, request))
        # No server answers here: anything that tried one would fail on this socket.
        redis_url = f"unix://{tmp_path}/no-redis-server-here.sock"
    variable = plugin.CLIENT_ENV if mode == "sync" else plugin.ASYNC_CLIENT_ENV
    extra[variable] = FACTORIES[(kind, mode)]

    select = analysis.select_ids(mode)
    xfails = _xfails(target)
    root = request.getfixturevalue("redispy_tests")
    outcome, stats, output, seconds = run_redispy(
        root, mode, select, xfails, extra, redis_url, tmp_path
    )
    summary = (
        f"redis-py {analysis.version} {mode} tests against {target} (Redis {server_version}): "
        f"{outcome.counts()} of {len(select)} selected in {seconds:.1f}s"
    )
    print(summary)
    for reason, n in Counter(outcome.skipped.values()).most_common():
        print(f"  skipped {n}: {reason}")

    problems = [f"{tid}: {message}" for tid, message in sorted(outcome.failed.items())]
    for name in sorted(xfails):
        if name.split("::", 1)[0] in REDISPY_FILES[mode] and name.split("[", 1)[0] not in select:
            problems.append(f"{name}: in XFAIL but not a selected test")
    if stats.get("missing"):
        problems += [f"{name}: selected, not collected" for name in stats["missing"]]
    ran = len(outcome.passed) + len(outcome.failed) + len(outcome.xfailed)
    if ran and not stats.get("clients_built"):
        problems.append("redispy_plugin built no client: redis-py's own fixtures ran")
    for test_id, commands in sorted(stats.get("commands", {}).items()):
        stray = sorted(set(commands) - SCOPE_SERVER_COMMANDS)
        if stray:
            problems.append(f"{test_id}: sent out-of-scope commands {' '.join(stray)}")
    if not problems and not ran:
        problems.append(f"no test ran:\n{output[-2000:]}")
    if problems:
        pytest.fail(
            f"{summary}\n" + "\n".join(problems) + f"\n(full output: {tmp_path / 'output.txt'})",
            pytrace=False,
        )


SERVE_TARGETS = {  # kvstore serve over TCP: (store, RESP version)
    "kvstore-serve-memory-resp3": ("memory", "3"),
    "kvstore-serve-memory-resp2": ("memory", "2"),
    "kvstore-serve-local-resp3": ("local", "3"),
    "kvstore-serve-local-resp2": ("local", "2"),
    "kvstore-serve-seaweedfs-resp3": ("seaweedfs", "3"),
    "kvstore-serve-seaweedfs-resp2": ("seaweedfs", "2"),
}


@pytest.mark.parametrize("target", SERVE_TARGETS)
def test_redispy_suite_over_tcp(
    target: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The same selected redis-py tests (sync), with plain redis-py clients talking RESP over
    TCP to ``kvstore serve`` (its Server, in this process, on a free loopback port) - the
    path every non-Python client takes too. Same command layer, so the same XFAILs."""
    from test_resp_server import serving

    import kvstore

    where, protocol = SERVE_TARGETS[target]
    analysis: Analysis = request.getfixturevalue("redispy_analysis")  # may skip: no sdist
    if where == "memory":
        store = kvstore.open_async(f"memory://redispy-serve-{uuid.uuid4().hex[:12]}", cache=None)
    elif where == "local":
        store = kvstore.open_async(str(tmp_path / "store"), cache=None)
    else:
        seaweedfs = request.getfixturevalue("seaweedfs_server")
        url = seaweedfs.url_for("kvstore-test", f"redispy-serve-{uuid.uuid4().hex[:12]}")
        store = kvstore.open_async(url, cache=None, storage_options=seaweedfs.storage_options)
    select = analysis.select_ids("sync")
    with serving(store) as server:
        redis_url = f"redis://127.0.0.1:{server.port}"
        extra = {
            redispy_plugin.REDIS_URL_ENV: redis_url,
            redispy_plugin.SERVER_VERSION_ENV: KVSTORE_REDIS_VERSION,
            redispy_plugin.CLIENT_ENV: FACTORIES[(REDIS_SERVER_TARGET, "sync")],
        }
        outcome, _stats, _output, seconds = run_redispy(
            request.getfixturevalue("redispy_tests"),
            "sync",
            select,
            _xfails(target),
            extra,
            redis_url,
            tmp_path,
            args=(f"--protocol={protocol}",),
        )
    summary = (
        f"redis-py {analysis.version} sync tests over TCP against {target}: "
        f"{outcome.counts()} of {len(select)} selected in {seconds:.1f}s"
    )
    print(summary)
    problems = [f"{tid}: {message}" for tid, message in sorted(outcome.failed.items())]
    if not (outcome.passed or outcome.xfailed):
        problems.append("no test ran")
    if problems:
        pytest.fail(
            f"{summary}\n" + "\n".join(problems) + f"\n(full output: {tmp_path / 'output.txt'})",
            pytrace=False,
        )


def main(argv: list[str]) -> int:
    """``--write-report``: regenerate tests/redispy_scope_report.md."""
    if argv != ["--write-report"]:
        print(__doc__)
        return 2
    version = redispy_version()
    analysis = Analysis.of(fetch_redispy_tests(version), version)
    REPORT_PATH.write_text(analysis.report())
    for problem in analysis.problems():
        print(problem)
    print(f"wrote {REPORT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
