"""The web console in a real browser: Debian's ``chromium``, driven by Playwright, against a
real ``serve`` and its admin listener, with plugins that hold, refuse and record.

Each page is kept as a screenshot in tests/artifacts/console/; with
``ARREARS_ROUTER_SCREENSHOT_DOCS=1``, the overview's is written to docs/console.png too.
Without chromium the browser tests skip, except where ``$ARREARS_ROUTER_REQUIRE_BROWSER`` is
set (``.ci/run`` sets it): they fail there. The session's own tests, at the end, speak HTTP
and need no browser.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from arrears_router.config import load_config
from arrears_router.wire.notifier import Notifier, sample_payload
from tests.harness import DEADLINE_S, MERCHANT, RouterProcess, wait_until, write_config

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts" / "console"
DOCS_SCREENSHOT = REPO / "docs" / "console.png"
DOCS_ENV = "ARREARS_ROUTER_SCREENSHOT_DOCS"
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
"""Debian's package (``.ci/run`` installs it): Playwright never downloads a browser here."""

ALICE = "alice-console-token-0123456789"
"""Scope operate."""
VIEWER = "viewer-console-token-0123456789"
"""Scope read."""
TOKENS = ({"name": "alice", "scope": "operate", "token": ALICE},
          {"name": "viewer", "scope": "read", "token": VIEWER})
RELOADED = "arrears_router.runtime config reloaded"
"""What the engine logs once a config edit applies."""

expect.set_options(timeout=DEADLINE_S * 1000)


class Console:
    """A ``serve`` with its admin listener; its plugins ``recorder`` (records each payment)
    and ``refusing`` (refuses each for good, until its config says otherwise)."""

    def __init__(self, directory: Path, start: Callable[..., RouterProcess],
                 merchant: Mapping[str, Any]) -> None:
        self.directory = directory
        self.config = self.write(merchant=merchant)
        self.router = start(self.config, "serve")
        self.notifier = Notifier(load_config(self.write(merchant=MERCHANT, dry=True)
                                             ).merchants[0])
        """WeChat, with the merchant's right keys (whatever the config says of them)."""

    @property
    def url(self) -> str:
        """The admin listener's (a restart may move it)."""
        return self.router.admin_url

    def write(self, *, merchant: Mapping[str, Any] = MERCHANT, refusing: bool = True,
              tokens: Sequence[Mapping[str, str]] = TOKENS, dry: bool = False) -> Path:
        path = self.directory / ("draft.toml" if dry else "config.toml")
        return write_config(
            path, merchants=[merchant], server={"port": 0},
            admin={"port": 0, "tokens": list(tokens)},
            plugins={
                "recorder": {"use": "tests.sample_plugins:Recorder",
                             "path": str(self.directory / "recorder.log")},
                "refusing": {"use": "tests.sample_plugins:Recorder",
                             "path": str(self.directory / "refusing.log"),
                             "permanent": refusing}},
        )

    def edit(self, **changes: Any) -> None:
        """Rewrite the config, and wait for the engine to apply it."""
        applied = self.router.log_text().count(RELOADED)
        self.write(**changes)
        wait_until(lambda: self.router.log_text().count(RELOADED) > applied,
                   "the engine to apply the config edit")

    def send(self, body: bytes) -> int:
        """POST a notification as WeChat does; its reply's errcode."""
        reply = httpx.post(f"{self.router.url}/ridecode/arrears", content=body, timeout=30)
        return int(reply.json()["errcode"])

    def pay(self, transaction_id: str) -> None:
        assert self.send(self.notifier.notification(sample_payload(transaction_id))) == 0

    def page(self, path: str) -> str:
        return f"{self.url}/admin{path}"


@pytest.fixture
def start_console(tmp_path: Path, start_process: Callable[..., RouterProcess]
                  ) -> Callable[..., Console]:
    def start(merchant: Mapping[str, Any] = MERCHANT) -> Console:
        return Console(tmp_path, start_process, merchant)
    return start


@pytest.fixture
def console(start_console: Callable[..., Console]) -> Console:
    return start_console()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("ARREARS_ROUTER_REQUIRE_BROWSER"):
            pytest.fail(f"no chromium at {CHROMIUM}: .ci/run installs Debian's package")
        pytest.skip(f"the console's browser tests need Debian's chromium ({CHROMIUM}):"
                    " apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 800}, locale="en-US")
    context.set_default_timeout(DEADLINE_S * 1000)
    yield context.new_page()
    context.close()


def shot(page: Page, name: str) -> None:
    """Keep the page as it looks, as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
    except PlaywrightError:  # chromium's capture of a page being laid out anew (a live part)
        page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def sign_in(page: Page, console: Console, token: str) -> None:
    page.goto(console.page("/"))
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def reload_until(page: Page, locator: Locator, text: str, what: str) -> None:
    """Reload the page until ``locator`` shows ``text``: the page shows the store as it is."""
    def shown() -> bool:
        page.reload()
        return locator.count() > 0 and text in locator.first.inner_text()
    wait_until(shown, what)


def post_form(page: Page, action: str, fields: Mapping[str, str]) -> int:
    """Submit a form the console did not serve, from the page shown; the answer's status."""
    with page.expect_navigation() as navigation:
        page.evaluate("""([action, fields]) => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = action;
            for (const [name, value] of Object.entries(fields)) {
                const input = document.createElement("input");
                input.name = name;
                input.value = value;
                form.append(input);
            }
            document.body.append(form);
            form.submit();
        }""", [action, dict(fields)])
    response = navigation.value
    assert response is not None
    return response.status


def test_sign_in_with_a_token_then_the_overview_updates_live(console: Console,
                                                             page: Page) -> None:
    page.goto(console.page("/payments"))
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    shot(page, "login")
    page.get_by_label("Token").fill("not-a-token-0123456789")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not one of the configured admin tokens")
    page.get_by_label("Token").fill(ALICE)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(console.page("/payments"))  # where it was going
    [session] = [c for c in page.context.cookies() if c["name"] == "arrears_console"]
    assert (session["httpOnly"], session["sameSite"], session["path"], session["secure"]) == (
        True, "Strict", "/admin", False)  # Secure only over TLS

    page.goto(console.page("/"))
    live = page.locator("#live")
    console.pay("TX-LIVE-1")
    console.pay("TX-LIVE-2")
    # Without a reload: the page fetches its live part again by itself.
    expect(live.locator('[data-plugin="refusing"] [data-live="dead"]')).to_have_text("2")
    expect(live.locator('[data-live="dead"]').first).to_have_text("2")
    expect(live.locator('[data-live="accepted"]')).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(live.locator('[data-live="refused"]')).to_have_text("0")
    assert console.send(console.notifier.notification(b"{}")) == 40005  # refused, quarantined
    expect(live.locator('[data-live="refused"]')).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(live.locator('[data-live="quarantined"]')).to_have_text("1")
    shot(page, "overview")
    if os.environ.get(DOCS_ENV) == "1":  # for the README, not on every run
        page.set_viewport_size({"width": 1000, "height": 400})
        page.screenshot(path=DOCS_SCREENSHOT, full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    for path in ("/", "/plugins", "/payments/TX-LIVE-1", "/dead"):
        page.goto(console.page(path))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            f"{path} scrolls sideways on a phone")
    shot(page, "dead-phone")
    page.goto(console.page("/"))
    shot(page, "overview-phone")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.goto(console.page("/plugins"))
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))


def test_pausing_a_plugin_holds_its_deliveries_and_enabling_runs_them(
        console: Console, page: Page) -> None:
    sign_in(page, console, ALICE)
    page.goto(console.page("/plugins"))
    recorder = page.locator('article[data-plugin="recorder"]')
    expect(recorder.locator('[data-field="changed"]')).to_contain_text("by config")
    recorder.get_by_role("link", name="Pause").click()
    expect(page.get_by_role("heading", name="Pause recorder?")).to_be_visible()
    shot(page, "confirm-mode")
    page.get_by_role("button", name="Pause recorder").click()
    expect(recorder.locator('[data-field="mode"]')).to_have_text("paused")
    expect(recorder.locator('[data-field="changed"]')).to_contain_text("by alice")
    shot(page, "plugins")

    console.pay("TX-HELD")
    page.goto(console.page("/payments/TX-HELD"))
    held = page.locator('tr[data-plugin="recorder"] [data-field="status"]')
    # The dispatcher has been at the payment: the other plugin's delivery has run.
    reload_until(page, page.locator('tr[data-plugin="refusing"] [data-field="status"]'),
                 "dead", "the refusing plugin's delivery to die")
    expect(held).to_have_text("pending")
    assert "TX-HELD" not in (console.directory / "recorder.log").read_text()
    shot(page, "payment-held")

    page.goto(console.page("/plugins"))
    recorder.get_by_role("link", name="Enable").click()
    page.get_by_role("button", name="Enable recorder").click()
    expect(recorder.locator('[data-field="mode"]')).to_have_text("enabled")
    page.goto(console.page("/payments/TX-HELD"))
    reload_until(page, held, "done", "the held delivery to run once enabled")
    assert "call recorder TX-HELD 1" in (console.directory / "recorder.log").read_text()

    page.goto(console.page("/audit"))
    rows = page.locator("tbody tr")
    expect(rows.nth(0)).to_contain_text("alice")
    expect(rows.nth(0)).to_contain_text("paused -> enabled")
    expect(rows.nth(1)).to_contain_text("enabled -> paused")
    shot(page, "audit")


def test_a_payment_is_found_by_its_transaction_id(console: Console, page: Page) -> None:
    for transaction_id in ("TX-FIND-1", "TX-FIND-2", "TX-FIND-3"):
        console.pay(transaction_id)
    sign_in(page, console, ALICE)
    page.get_by_role("link", name="Payments").click()
    expect(page.locator("tbody tr")).to_have_count(3)
    page.get_by_label("transaction_id").fill("TX-FIND-2")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("TX-FIND-2")
    shot(page, "payments")

    rows.get_by_role("link", name="TX-FIND-2").click()
    expect(page.get_by_role("heading", name="Payment TX-FIND-2")).to_be_visible()
    fields = page.locator("table.fields")
    for shown in ("transaction_id", "交易单号", "TX-FIND-2", "total_fee", "支付金额", "¥3.00",
                  "repay_no", "欠费单号", "RTX-FIND-2", "2026-11-25 09:30:15+08:00"):
        expect(fields).to_contain_text(shown)
    expect(page.locator("tr[data-delivery]")).to_have_count(2)  # one a plugin
    shot(page, "payment")


def test_dead_deliveries_are_replayed_one_or_all_of_a_plugin(console: Console,
                                                              page: Page) -> None:
    console.pay("TX-DEAD-1")
    console.pay("TX-DEAD-2")
    sign_in(page, console, ALICE)
    page.goto(console.page("/dead"))
    for transaction_id in ("TX-DEAD-1", "TX-DEAD-2"):
        reload_until(page, page.locator("tbody tr", has_text=transaction_id),
                     "refused for good", f"{transaction_id}'s delivery to die")
    shot(page, "dead")

    console.edit(refusing=False)  # the cause fixed; then the replays
    page.locator("tbody tr", has_text="TX-DEAD-1").get_by_role("button", name="Replay").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Delivery #\d+"))).to_be_visible()
    reload_until(page, page.locator('table.fields [data-field="status"]'), "done",
                 "the replayed delivery to be done")
    expect(page.get_by_role("row", name="Replays 1")).to_be_visible()
    shot(page, "delivery")

    page.goto(console.page("/dead?plugin=refusing"))
    expect(page.locator("tbody tr")).to_have_count(1)  # TX-DEAD-2's
    page.get_by_role("button", name="Replay every dead delivery of refusing").click()
    expect(page.locator('[data-field="count"]')).to_have_text("1")
    shot(page, "replay-plan")
    page.get_by_role("button", name="Replay 1 dead delivery").click()
    expect(page.locator('[data-field="ran"]')).to_contain_text("by alice")
    expect(page.locator('[data-field="ran"]')).to_contain_text("1 replayed")
    page.goto(console.page("/payments/TX-DEAD-2"))
    reload_until(page, page.locator('tr[data-plugin="refusing"] [data-field="status"]'), "done",
                 "the planned replay to be done")

    page.goto(console.page("/audit"))
    rows = page.locator("tbody tr")
    for row, action in enumerate(("replay_run", "replay_plan", "replay")):
        expect(rows.nth(row)).to_contain_text(re.compile(rf"alice\s+{action}\s"))
    page.goto(console.page("/dead"))
    expect(page.locator("tbody tr")).to_contain_text("No dead delivery")


def test_a_quarantined_request_is_reingested(start_console: Callable[..., Console],
                                             page: Page) -> None:
    console = start_console(merchant={**MERCHANT, "aes_key": "fedcba9876543210"})  # wrong
    assert console.send(console.notifier.notification(sample_payload("TX-QUAR"))) in (
        40004, 40005)  # signed, but not readable with the key configured
    sign_in(page, console, ALICE)
    page.goto(console.page("/quarantine"))
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    shot(page, "quarantine")
    rows.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name=re.compile("Quarantined request"))).to_be_visible()

    console.edit(merchant=MERCHANT)  # the key fixed
    page.get_by_role("button", name="Re-ingest").click()
    outcome = page.locator('[data-field="reingest"]')
    expect(outcome).to_contain_text("by alice")
    expect(outcome).to_contain_text("errcode 0, the payment is stored")
    shot(page, "quarantined")
    page.goto(console.page("/payments/TX-QUAR"))
    expect(page.get_by_role("heading", name="Payment TX-QUAR")).to_be_visible()


def test_a_forged_form_changes_nothing(console: Console, page: Page) -> None:
    sign_in(page, console, ALICE)
    page.goto(console.page("/plugins"))
    mode = console.page("/plugins/recorder/mode")
    assert post_form(page, mode, {"mode": "disabled", "csrf": "forged"}) == 403
    expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
    shot(page, "csrf-refused")
    page.goto(console.page("/plugins"))
    assert post_form(page, mode, {"mode": "disabled"}) == 403

    # From another site, the session cookie is not even sent: to the login page.
    page.goto("about:blank")
    post_form(page, mode, {"mode": "disabled"})
    expect(page).to_have_url(re.compile(r"/admin/login"))
    # A token in a header is for the API: the console takes forms from its session only.
    answer = httpx.post(mode, data={"mode": "disabled"}, timeout=30,
                        headers={"Authorization": f"Bearer {ALICE}"})
    assert answer.status_code == 303 and "/admin/login" in answer.headers["location"]

    page.goto(console.page("/plugins"))
    expect(page.locator('article[data-plugin="recorder"] [data-field="mode"]')).to_have_text(
        "enabled")
    page.goto(console.page("/audit?action=mode"))
    expect(page.locator("tbody")).not_to_contain_text("alice")


CHANGES = "form[method=post]:not([action='/admin/logout']), .change"
"""Whatever could change something: any form but signing out, any button or link to one."""


def test_a_read_token_sees_everything_and_no_button_that_changes_anything(
        console: Console, page: Page) -> None:
    console.pay("TX-READ")  # a payment, a dead delivery of it, and
    assert console.send(console.notifier.notification(b"{}")) == 40005  # a quarantined request
    sign_in(page, console, VIEWER)
    page.goto(console.page("/dead"))
    reload_until(page, page.locator("tbody tr", has_text="TX-READ"), "refused for good",
                 "the delivery to die")
    delivery = page.locator("tbody tr a").first.get_attribute("href")
    page.goto(console.page("/quarantine"))
    quarantined = page.locator("tbody tr a").first.get_attribute("href")
    for name, path in [("overview", "/admin/"), ("plugins", "/admin/plugins"),
                       ("payments", "/admin/payments"), ("payment", "/admin/payments/TX-READ"),
                       ("delivery", delivery), ("dead", "/admin/dead?plugin=refusing"),
                       ("quarantine", "/admin/quarantine"), ("quarantined", quarantined),
                       ("audit", "/admin/audit")]:
        page.goto(f"{console.url}{path}")
        expect(page.locator("main h1")).to_be_visible()
        expect(page.locator(CHANGES)).to_have_count(0)
        shot(page, f"read-{name}")

    page.goto(console.page("/plugins/recorder/mode?to=paused"))
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("scope read")
    page.goto(console.page("/plugins"))
    csrf = page.locator("form[action='/admin/logout'] input[name=csrf]").input_value()
    assert post_form(page, console.page("/plugins/recorder/mode"),
                     {"mode": "paused", "csrf": csrf}) == 403  # a valid form, not allowed
    page.goto(console.page("/plugins"))
    expect(page.locator('article[data-plugin="recorder"] [data-field="mode"]')).to_have_text(
        "enabled")


@contextlib.contextmanager
def signed_in_client(console: Console, token: str) -> Iterator[httpx.Client]:
    """A client holding the session cookie a sign-in with ``token`` got, as a browser would."""
    with httpx.Client(timeout=30) as client:
        form = client.get(console.page("/login"))
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None, form.text
        answer = client.post(console.page("/login"),
                             data={"token": token, "csrf": csrf.group(1)})
        assert answer.status_code == 303, answer.text
        assert "arrears_console" in client.cookies
        yield client


def signed_in(client: httpx.Client, console: Console) -> bool:
    answer = client.get(console.page("/plugins"))
    assert answer.status_code in (200, 303), answer.text
    return answer.status_code == 200


def test_a_session_outlives_a_restart_and_ends_with_its_token(console: Console) -> None:
    """Sessions are signed with a key the tokens make: no state lost on a restart, and a
    token revoked or changed ends the sessions signed in with it, or with any other."""
    with signed_in_client(console, ALICE) as alice, signed_in_client(console, VIEWER) as viewer:
        console.router.restart()
        assert signed_in(alice, console) and signed_in(viewer, console)

        console.edit(tokens=TOKENS[:1])  # the viewer's token revoked
        assert not signed_in(viewer, console)
        assert not signed_in(alice, console)  # the key changed with the tokens
    with signed_in_client(console, ALICE) as alice:
        assert signed_in(alice, console)
        # A session is what its signature covers: another scope written into it is refused.
        cookie = alice.cookies["arrears_console"]
        body, _, signature = cookie.partition(".")
        claims = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(
            b'"operate"', b'"read"')
        forged = base64.urlsafe_b64encode(claims).rstrip(b"=").decode()
        alice.cookies.clear()
        alice.cookies.set("arrears_console", f"{forged}.{signature}", path="/admin")
        assert not signed_in(alice, console)


def test_cookies_go_over_tls_only_when_the_console_is_reached_over_tls(console: Console
                                                                       ) -> None:
    """Behind a local proxy that ends TLS (and says so, X-Forwarded-Proto), each cookie is
    Secure; over plain HTTP on the host it could not be (the browser would drop it)."""
    behind_tls = {"X-Forwarded-Proto": "https"}
    form = httpx.get(console.page("/login"), headers=behind_tls, timeout=30)
    assert "; secure" in form.headers["set-cookie"].lower()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = httpx.post(console.page("/login"), data={"token": ALICE, "csrf": csrf.group(1)},
                        timeout=30, headers={**behind_tls, "Cookie": (
                            f"arrears_console_login={form.cookies['arrears_console_login']}")})
    assert answer.status_code == 303
    [session] = [c for c in answer.headers.get_list("set-cookie")
                 if c.startswith("arrears_console=")]
    assert {"httponly", "samesite=strict", "path=/admin", "secure"} <= {
        part.strip().lower() for part in session.split(";")}
