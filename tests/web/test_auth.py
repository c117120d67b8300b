"""Signing in and out, what a visitor without a session gets, and CSRF refusals."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, expect

from sandbox.fleet import SandboxInfo
from tests.web.conftest import ECHO, LAPTOP, Console, Tab, docker_state, sign_in

pytestmark = pytest.mark.sandbox


def _run_count(console: Console) -> int:
    with console.http() as http:
        return len(http.get("/api/v1/runs", params={"limit": 500}).json())


def test_pages_and_streams_need_a_session(console: Console) -> None:
    toolbox = console.toolboxes["toolbox-1"]
    runs_before = _run_count(console)
    with httpx.Client(base_url=console.url, follow_redirects=False) as anonymous:
        for path in (
            "/toolboxes",
            f"/toolboxes/{toolbox}",
            f"/toolboxes/{toolbox}/tabs/containers",
            f"/toolboxes/{toolbox}/tools/{ECHO}/logs/stream",
            f"/toolboxes/{toolbox}/tools/{ECHO}/logs.txt",
            "/runs/0123456789abcdef/events",
        ):
            page = anonymous.get(path)
            assert page.status_code == 303, path
            assert page.headers["location"].startswith("/login?next="), path
            assert "echo tool" not in page.text
        fragment = anonymous.get("/toolboxes/rows", headers={"HX-Request": "true"})
        assert (fragment.status_code, fragment.headers["hx-redirect"]) == (401, "/login")
        stop = anonymous.post(f"/toolboxes/{toolbox}/tools/{ECHO}/stop")
        assert stop.status_code == 303
        # A bearer token is not a session: the pages take only the cookie.
        bearer = anonymous.get(
            "/toolboxes", headers={"Authorization": f"Bearer {console.admin_token}"}
        )
        assert bearer.status_code == 303
    assert _run_count(console) == runs_before


def test_sign_in_brings_the_visitor_back_to_the_page_asked_for(
    browser: Browser, console: Console
) -> None:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    target = console.page_url("toolbox-2", "system")
    page.goto(target)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.locator("h1")).to_have_text("Sign in")
    page.fill("#token", console.admin_token)
    page.click("form.login-card button[type=submit]")
    expect(page).to_have_url(target)
    expect(page.locator("h1")).to_have_text("toolbox-2")
    context.close()


def test_a_bad_token_is_refused_next_to_the_field(browser: Browser, console: Console) -> None:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.goto(f"{console.url}/login")
    page.fill("#token", "dtma_not-a-real-token")
    page.click("form.login-card button[type=submit]")
    field = page.locator(".field.invalid")
    expect(field.locator(".error")).to_contain_text("invalid API token")
    expect(page.locator("#token")).to_have_attribute("aria-invalid", "true")
    assert not [c for c in context.cookies() if c["name"] == "dtma_session"]
    context.close()


def test_session_cookie_is_httponly_and_samesite_strict(tab: Tab, console: Console) -> None:
    cookies = {c["name"]: c for c in tab.page.context.cookies()}
    session = cookies["dtma_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/"
    # HttpOnly: the page's scripts cannot read it.
    assert "dtma_session" not in tab.page.evaluate("document.cookie")
    # Signed in already: the login page sends the visitor on.
    tab.page.goto(f"{console.url}/login")
    expect(tab.page).to_have_url(f"{console.url}/toolboxes")


def test_posts_without_the_csrf_token_are_refused(
    tab: Tab, console: Console, sandbox: SandboxInfo
) -> None:
    """The browser's own session cookie, but no (or a wrong) CSRF token: 403, nothing runs."""
    toolbox = console.toolboxes["toolbox-1"]
    container = sandbox.droplet("toolbox-1").container
    state = docker_state(container, ECHO)
    assert state is not None and state["Running"], state
    runs_before = _run_count(console)
    request = tab.page.request  # shares the page's cookies
    for headers in ({}, {"X-CSRF-Token": "0" * 64}):
        for path, form in (
            (f"/toolboxes/{toolbox}/tools/{ECHO}/stop", None),
            (f"/toolboxes/{toolbox}/tools", {"name": "csrf-probe", "image": "dtma-tool-echo:1.0"}),
            (f"/toolboxes/{toolbox}/dtma/restart", None),
            ("/toolboxes/sync", None),
            ("/toolboxes", {"name": "csrf-probe", "region": "fra1", "size": "s-1vcpu-1gb"}),
            (f"/toolboxes/{toolbox}/retire", {"confirm": "toolbox-1"}),
            ("/registries", {"registry": "csrf.example", "username": "u", "password": "p"}),
            ("/logout", None),
        ):
            answer = request.post(f"{console.url}{path}", headers=headers, form=form)
            assert answer.status == 403, (path, headers, answer.status)
            assert answer.json()["error"]["code"] == "csrf_failed"
    assert _run_count(console) == runs_before
    state = docker_state(container, ECHO)
    assert state is not None and state["Running"], state
    assert docker_state(container, "csrf-probe") is None
    # The refused logout did not end the session.
    tab.page.goto(f"{console.url}/toolboxes")
    expect(tab.page.locator("h1")).to_have_text("Toolboxes")


def test_a_login_post_from_elsewhere_is_refused(console: Console) -> None:
    """The login form is protected too: without the form's own token the login fails."""
    with httpx.Client(base_url=console.url, follow_redirects=False) as outsider:
        answer = outsider.post("/login", data={"token": console.admin_token, "csrf_token": "x"})
        assert answer.status_code == 403
        assert "dtma_session" not in answer.cookies


def test_logout_ends_the_session_on_the_server(tab: Tab, console: Console) -> None:
    cookie = next(c for c in tab.page.context.cookies() if c["name"] == "dtma_session")
    tab.page.click("header.topbar form button[type=submit]")
    expect(tab.page.locator("h1")).to_have_text("Sign in")
    # The old cookie value no longer opens anything.
    with httpx.Client(base_url=console.url, follow_redirects=False) as replay:
        replay.cookies.set("dtma_session", cookie["value"])
        assert replay.get("/toolboxes").status_code == 303


def test_a_user_sees_only_their_own_toolboxes(browser: Browser, console: Console) -> None:
    """A non-admin owning nothing: an empty list, 404 for a toolbox page, no sync button."""
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    sign_in(page, console, console.token("web-visitor"))
    expect(page.locator("#toolbox-rows")).to_contain_text("No toolboxes yet")
    expect(page.locator("[data-testid=sync]")).to_have_count(0)
    answer = page.goto(console.page_url("toolbox-1"))
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("Toolbox not found")
    context.close()
