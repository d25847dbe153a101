"""The web console of the HTTP service (``/``, ``/console/...``; issue 19) in a real
headless browser: Debian's chromium driven by selenium, every page loaded, its content
read from the rendered DOM, links clicked through. A screenshot of each page goes to the
test's ``tmp_path`` only. The store holds hostile strings (markup, quotes, a script) in
keys, values, records, artifact metadata and session events: each page must show them as
text, and no script of theirs may run.

Needs ``apt-get install -y chromium chromium-driver`` and selenium (the test extra): the
tests fail, saying so, when they are missing.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from http_server import client, serving

import kvstore
from kvstore.http.config import HttpConfig, Token

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = (
    "the console tests drive Debian's chromium: install it with "
    "`apt-get install -y chromium chromium-driver` and `pip install selenium` "
    "(kvstore's test extra)"
)

PWN = "<script>window.__pwned=1;alert(1)</script>"
HOSTILE = f'{PWN}"\'><img src=x onerror="window.__pwned=2">&amp;'
"""Markup, both quotes and an entity: shown as this very text, never run or parsed."""
HOSTILE_NS = "<b>ns\"'&"  # a namespace name cannot hold '/' and be browsed with ?ns=
LOG_KEY = "events:main"
ARTIFACT = "report.bin"
VERSIONS = [b"version zero", b"\x00\x01binary one\xff", b"version two " * 10]
ADMIN_SECRET = "admin-secret-0123456789"
READER_SECRET = "reader-secret-0123456789"


# -- the browser ---------------------------------------------------------------------------


def _driver() -> Any:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"selenium is not installed: {INSTALL}")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--no-proxy-server",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    browser = _driver()
    try:
        yield browser
    finally:
        browser.quit()


@dataclass
class Console:
    """The browser on one running service: ``visit`` a page, check it, screenshot it."""

    driver: Any
    url: str
    shots: Path

    def visit(self, path: str, shot: str) -> Any:
        self.driver.get(urljoin(self.url, path))
        return self.check(shot)

    def check(self, shot: str, allowed: tuple[str, ...] = ()) -> Any:
        """The page now shown: no script of the store's ran, none is in the DOM, the
        browser logged no error (but ``allowed`` ones), and its screenshot is saved."""
        d = self.driver
        assert d.execute_script("return typeof window.__pwned") == "undefined"
        assert d.find_elements("tag name", "script") == []  # the console sends none
        assert d.find_elements("tag name", "img") == []  # nor images: one would be injected
        errors = [
            e
            for e in d.get_log("browser")
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)
        ]
        assert errors == [], errors
        path = self.shots / f"{shot}.png"
        assert d.save_screenshot(str(path)) and path.stat().st_size > 1000
        return d

    def text(self, css: str) -> str:
        return str(self.driver.find_element("css selector", css).text)

    def texts(self, css: str) -> list[str]:
        return [e.text for e in self.driver.find_elements("css selector", css)]

    def click(self, text: str) -> None:
        self.driver.find_element("link text", text).click()

    def query(self) -> str:
        return str(self.driver.current_url).removeprefix(self.url)


def _fill(root: Path) -> None:
    """Namespaces, values of several types (with TTLs), a log of 250 records, an artifact
    of 3 versions, a session with events and state - hostile strings among them."""
    with kvstore.open(str(root), cache=None) as store:
        store.mset({f"page:{i:03d}": f"value {i}" for i in range(120)})
        store.set("greeting", "hello, console", ex=3600)
        store.set(HOSTILE, HOSTILE)
        store.set("binary", b"\x00\xff\xfe\x01")
        store.set("big", "x" * 10_000)
        store.extend(
            LOG_KEY, [f"record {i}" + (f" {HOSTILE}" if i == 7 else "") for i in range(250)]
        )
        for data in VERSIONS:
            store.artifacts.save(ARTIFACT, data, metadata={"note": HOSTILE})
        store.artifacts.save(HOSTILE, b"hostile artifact")
        store.sessions.create("chat", "ann", "s-1", state={"mood": HOSTILE}, title=HOSTILE)
        store.sessions.append_event("chat", "ann", "s-1", {"text": HOSTILE}, {"step": 1})
        store.sessions.append_event("chat", "ann", "s-1", {"text": "second"}, {"step": 2})
        store.sessions.create("chat", "bob", "s-2")
        tenant = store.namespace("tenant-a")
        tenant.set("tenant-key", "tenant value")
        tenant.namespace("inner").set("deep", "deep value")
        store.namespace(HOSTILE_NS).set("k", "v")
    with contextlib.closing(kvstore.Redis(str(root), cache=None)) as redis:
        redis.hset("profile", mapping={"name": "ann", "role": HOSTILE})
        redis.expire("profile", 7200)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("console-store")
    _fill(root)
    with serving(lambda: kvstore.open_async(str(root), cache="local")) as url:
        yield url


@pytest.fixture
def console(driver: Any, service: str, tmp_path: Path) -> Console:
    driver.delete_all_cookies()
    return Console(driver, service, tmp_path)


# -- the pages -----------------------------------------------------------------------------


def test_overview_lists_namespaces_counts_and_stats(console: Console) -> None:
    for _ in range(2):  # a miss, then a hit of the cache
        console.visit("/console/value?key=greeting", "value-read")
    console.visit("/", "overview")
    assert console.texts("#counts td") == ["2", "125", "1", "2"]
    assert console.texts("#namespaces td") == [HOSTILE_NS, "tenant-a"]
    assert re.fullmatch(r"\d+\.\d%", console.text("#hit-ratio")), console.text("#hit-ratio")
    kinds = dict(zip(*[iter(console.texts("#store-kinds td"))] * 2, strict=True))
    assert int(kinds["list"]) >= 1 and int(kinds["get"]) >= 1, kinds
    chart = console.driver.find_element("id", "stats-chart")
    samples = int(chart.get_attribute("data-samples"))
    assert samples >= 2  # the one taken at startup, and this page's
    for series in ("http", "store", "hits"):
        points = chart.find_elements("css selector", f"circle.point-{series}")
        assert len(points) == samples
        assert chart.find_elements("css selector", f"polyline.series-{series}")

    console.click("tenant-a")
    console.check("overview-tenant")
    assert console.query() == "/?ns=tenant-a"
    assert console.texts("#namespaces td") == ["inner"]
    assert console.texts("#counts td")[1] == "1"
    console.click("inner")
    console.check("overview-inner")
    assert console.query() == "/?ns=tenant-a%2Finner"
    assert console.texts("#counts td")[:2] == ["0", "1"]
    assert console.text("nav.crumbs") == "namespace: (root) / tenant-a / inner"
    console.click("Keys")
    console.check("keys-inner")
    assert console.texts("#keys td a") == ["deep"]

    console.visit("/", "overview-again")
    console.click(HOSTILE_NS)  # a hostile namespace name: a link, its text intact
    console.check("overview-hostile-ns")
    assert console.text("nav.crumbs").endswith(HOSTILE_NS)
    assert console.texts("#keys td a") == [] and console.texts("#counts td")[1] == "1"


def test_keys_page_types_ttls_sizes_and_paging(console: Console) -> None:
    console.visit("/console/keys", "keys")
    cells: dict[str, list[str]] = {}
    pages = []
    while True:
        rows = console.driver.find_elements("css selector", "#keys tbody tr")
        texts = [[td.text for td in r.find_elements("tag name", "td")] for r in rows]
        assert texts and not {t[0] for t in texts} & set(cells)  # pages do not overlap
        cells.update((t[0], t[1:]) for t in texts)
        pages.append(len(texts))
        if not console.driver.find_elements("id", "next"):
            break
        console.click("next")
        console.check(f"keys-page-{len(pages) + 1}")
    assert pages == [50, 50, 25]
    assert cells[HOSTILE] == ["string", "none", f"{len(HOSTILE.encode())} B"]
    assert cells["big"] == ["string", "none", "9.8 KiB"]
    assert cells["binary"] == ["string", "none", "4 B"]
    assert cells["page:007"] == ["string", "none", "7 B"]
    assert cells["greeting"][0] == "string" and re.fullmatch(r"3\d\d\d s", cells["greeting"][1])
    assert cells["profile"][0] == "hash" and re.fullmatch(r"7\d\d\d s", cells["profile"][1])
    assert console.texts("#logs td") == [LOG_KEY]
    seen = list(cells)
    console.click("first")
    console.check("keys-first-again")
    assert console.texts("#keys td a")[0] == seen[0]

    console.visit("/console/keys?prefix=page:11", "keys-prefix")
    assert console.texts("#keys td a") == [f"page:{i}" for i in range(110, 120)]
    assert console.texts("#logs td") == []


def test_value_pages_show_text_hex_and_cut(console: Console) -> None:
    console.visit("/console/keys", "keys-for-values")
    console.click(HOSTILE)
    console.check("value-hostile")
    assert console.text("#value pre") == HOSTILE  # shown as text, not markup
    assert console.text("h1") == f"Value {HOSTILE}"

    console.visit("/console/keys", "keys-for-binary")
    console.click("binary")
    console.check("value-binary")
    assert console.text("#value pre.hex") == "00 ff fe 01"
    assert "shown as hex" in console.text("#value .note")

    console.visit("/console/value?key=big", "value-big")
    assert console.text("#value pre") == "x" * 4096
    assert "10000 bytes" in console.text("#value .note")
    assert "only the first 4096 shown" in console.text("#value .note")

    console.visit("/console/value?key=profile", "value-hash")
    assert console.texts("#value-info td")[:2] == ["profile", "hash"]
    assert "Redis face" in console.text("#value")

    missing = "Failed to load resource: the server responded with a status of 404"
    console.driver.get(urljoin(console.url, "/console/value?key=absent"))
    console.check("value-missing", allowed=(missing,))
    assert console.text("#error") == "NotFoundError: no value at key 'absent'"


def test_log_pages_through_250_records(console: Console) -> None:
    console.visit("/console/keys", "keys-for-log")
    console.click(LOG_KEY)
    console.check("log-first")
    assert (
        console.text("#log-summary") == f"{LOG_KEY}: records 0-49 of 250 (sequence numbers from 0)"
    )
    records = console.texts("#records td pre")
    assert records[0] == "record 0" and records[7] == f"record 7 {HOSTILE}" and len(records) == 50
    assert not console.driver.find_elements("id", "prev")
    console.click("next")
    console.check("log-second")
    assert console.texts("#records .seq")[0] == "50"
    assert console.texts("#records td pre")[-1] == "record 99"
    console.click("last")
    console.check("log-last")
    assert console.text("#log-summary").startswith(f"{LOG_KEY}: records 200-249 of 250")
    assert not console.driver.find_elements("id", "next")
    console.click("previous")
    console.check("log-previous")
    assert console.texts("#records .seq")[0] == "150"
    console.click("first")
    console.check("log-first-again")
    assert console.texts("#records .index")[0] == "0"


def test_artifacts_versions_and_downloads(console: Console) -> None:
    console.visit("/console/artifacts", "artifacts")
    assert console.texts("#artifacts td") == sorted([ARTIFACT, HOSTILE])
    console.click(ARTIFACT)
    console.check("artifact-versions")
    assert console.texts("#versions .version") == ["0", "1", "2"]
    assert json.dumps(HOSTILE) in console.text("#versions")  # metadata, as text
    links = console.driver.find_elements("css selector", "#versions a.download")
    hrefs = [a.get_attribute("href") for a in links]
    with httpx.Client(timeout=60, trust_env=False) as http:
        for version, (href, data) in enumerate(zip(hrefs, VERSIONS, strict=True)):
            assert href.endswith(f"?version={version}")
            got = http.get(href)
            assert got.status_code == 200 and got.content == data

    console.visit("/console/artifacts", "artifacts-again")
    console.click(HOSTILE)
    console.check("artifact-hostile")
    (href,) = [
        a.get_attribute("href") for a in console.driver.find_elements("css selector", "a.download")
    ]
    with httpx.Client(timeout=60, trust_env=False) as http:
        assert http.get(href).content == b"hostile artifact"


def test_sessions_list_and_a_session(console: Console) -> None:
    console.visit("/console/sessions", "sessions-form")
    field = console.driver.find_element("css selector", "input[name=app]")
    field.send_keys("chat")
    field.submit()
    console.check("sessions-list")
    assert console.query() == "/console/sessions?app=chat&user="
    assert console.texts("#sessions td a") == ["s-1", "s-2"]
    first = console.texts("#sessions tbody tr")[0]
    assert "ann" in first and HOSTILE in first  # the title, as text
    console.click("s-1")
    console.check("session")
    assert console.texts("#session-info td")[:3] == ["chat", "ann", "s-1"]
    assert f'"mood": {json.dumps(HOSTILE)}' in console.text("#state")
    assert console.texts("#events .seq") == ["0", "1"]
    assert f'"text": {json.dumps(HOSTILE)}' in console.text("#events")
    assert '"step": 2' in console.text("#events")
    console.click("sessions of chat")
    console.check("sessions-back")
    assert console.texts("#sessions td a") == ["s-1", "s-2"]


# -- tokens --------------------------------------------------------------------------------


def test_tokens_login_wrong_right_read_only(driver: Any, tmp_path: Path) -> None:
    root = tmp_path / "store"
    _fill(root)
    config = HttpConfig(
        tokens=(
            Token("admin", ADMIN_SECRET.encode(), None, True),
            Token("reader", READER_SECRET.encode(), "tenant-a", False),
        )
    )
    refused = "the server responded with a status of 401"
    with serving(lambda: kvstore.open_async(str(root), cache="local"), config) as url:
        driver.delete_all_cookies()
        console = Console(driver, url, tmp_path)

        def sign_in(secret: str, shot: str) -> None:
            field = driver.find_element("id", "token")
            field.clear()
            field.send_keys(secret)
            driver.find_element("id", "sign-in").click()
            console.check(shot, allowed=(refused,))

        driver.get(urljoin(url, "/console/keys"))
        console.check("unauthenticated", allowed=(refused,))
        assert driver.find_elements("id", "login") and console.texts("#keys") == []

        sign_in("not-a-token-at-all-000", "wrong-token")
        assert console.text("#login-error") == "unknown token"
        assert driver.get_cookies() == []

        sign_in(ADMIN_SECRET, "admin-overview")
        assert console.query() == "/"
        assert console.texts("#namespaces td") == [HOSTILE_NS, "tenant-a"]
        (cookie,) = driver.get_cookies()
        assert cookie["name"] == "kvstore_token" and cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        console.click("Keys")
        console.check("admin-keys")
        assert len(console.texts("#keys tbody tr")) == 50

        # the cookie reads, never writes: a cross-site form could send it
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as http:
            http.cookies.set("kvstore_token", ADMIN_SECRET)
            assert http.get("/v1/values/greeting").content == b"hello, console"
            assert http.put("/v1/values/greeting", content=b"x").status_code == 401
        with client(url, ADMIN_SECRET) as http:  # the header path is unchanged
            assert http.get("/v1/values/greeting").content == b"hello, console"

        driver.find_element("css selector", "header form button").click()
        console.check("signed-out", allowed=(refused,))
        assert driver.find_elements("id", "login") and driver.get_cookies() == []

        sign_in(READER_SECRET, "reader-overview")  # read-only, confined to tenant-a
        assert console.texts("#namespaces td") == ["inner"]
        assert "token reader" in console.text("header")
        console.click("Keys")
        console.check("reader-keys")
        assert console.texts("#keys td a") == ["tenant-key"]
        console.click("tenant-key")
        console.check("reader-value")
        assert console.text("#value pre") == "tenant value"
        console.visit("/console/sessions?app=chat", "reader-sessions")
        assert console.texts("#sessions td") == []  # the sessions are outside tenant-a


def test_console_without_tokens_has_nothing_to_sign_in_to(service: str) -> None:
    with httpx.Client(base_url=service, timeout=60, trust_env=False) as http:
        page = http.get("/console/login")
        assert page.status_code == 200 and "no tokens" in page.text
        assert http.post("/console/login", data={"token": "x"}).status_code == 200
        headers = http.get("/").headers
        assert "script-src" not in headers["content-security-policy"]
        assert headers["content-security-policy"].startswith("default-src 'none'")
        too_big = http.post("/console/login", data={"token": "x" * 5000})
        assert too_big.status_code == 413 and "text/html" in too_big.headers["content-type"]
        bad = http.get("/console/keys?ns=a//b")
        assert bad.status_code == 400 and "ConfigurationError" in bad.text
        assert "text/html" in bad.headers["content-type"]
