"""The Registries page in Chromium (admins): add, replace and remove a login; the password
never reaches a page; a refused form shows the API's code and message and stores nothing.
And what a non-admin meets: no New toolbox form, no Retire, no Registries link, and 403 on
every one of these posts, with nothing changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from api.vault.models import RegistryCredential
from tests.web.conftest import LAPTOP, Console, Tab, sign_in

pytestmark = pytest.mark.sandbox

REGISTRY = "registry.web-test.example:5000"


def registries(console: Console) -> list[dict[str, str]]:
    with console.http() as http:
        listed = http.get("/api/v1/registries")
    assert listed.status_code == 200, listed.text
    return list(listed.json())


def test_registry_logins_are_added_replaced_and_removed_and_the_secret_never_shown(
    tab: Tab, console: Console, screenshots: Path
) -> None:
    page = tab.page
    secret, replaced = "s3cret-web-PW-1", "s3cret-web-PW-2"
    page.locator("nav[aria-label=Main] a[href='/registries']").click()
    page.wait_for_url(f"{console.url}/registries")
    expect(page.locator("nav[aria-label=Main] a[aria-current=page]")).to_have_text("Registries")

    page.fill("#registry-host", REGISTRY)
    page.fill("#registry-username", "puller")
    page.fill("#registry-password", secret)
    page.click("[data-testid=save-registry]")
    row = page.locator(f"tr[data-registry='{REGISTRY}']")
    expect(row).to_contain_text("puller")
    expect(row).to_contain_text("web-admin")
    page.screenshot(path=screenshots / "laptop-registries.png", full_page=True)
    assert secret not in page.content()
    assert [(r["registry"], r["username"]) for r in registries(console)] == [(REGISTRY, "puller")]

    # Replace it: one row, the new username; neither password on the page or at rest.
    page.fill("#registry-host", REGISTRY)
    page.fill("#registry-username", "puller2")
    page.fill("#registry-password", replaced)
    page.click("[data-testid=save-registry]")
    expect(row).to_contain_text("puller2")
    expect(page.locator("#registries tr[data-registry]")).to_have_count(1)
    html = page.content()
    assert secret not in html and replaced not in html
    with console.app.state.context.sessions() as session:
        stored = session.query(RegistryCredential).one()
        assert replaced not in stored.password_sealed
        assert (
            console.app.state.context.secrets.unseal_from(
                stored, RegistryCredential.password_sealed
            )
            == replaced
        )

    # A refused form: the API's code and message, nothing stored.
    page.fill("#registry-host", "not a registry/")
    page.fill("#registry-username", "puller")
    page.fill("#registry-password", secret)
    page.click("[data-testid=save-registry]")
    with console.http() as http:
        api = http.put("/api/v1/registries/bad%20host", json={"username": "u", "password": "p"})
    assert api.status_code == 422
    error = page.locator("[data-testid=registry-error]")
    expect(error.locator("[data-error-code]")).to_have_text(api.json()["error"]["code"])
    expect(error).to_contain_text(api.json()["error"]["message"])
    assert secret not in page.content()
    assert [r["username"] for r in registries(console)] == ["puller2"]

    # Remove it.
    row.locator("[data-testid=remove-registry]").click()
    expect(page.locator("[data-testid=registry-done]")).to_contain_text("removed")
    expect(page.locator("#registries tr[data-registry]")).to_have_count(0)
    assert registries(console) == []


@pytest.fixture
def user_page(browser: Browser, console: Console) -> Iterator[tuple[Page, str]]:
    """A non-admin signed in, owning toolbox-3 for the test."""
    owned = console.toolboxes["toolbox-3"]
    token = console.token("web-operator")
    with console.http() as http:
        assert http.patch(f"/api/v1/toolboxes/{owned}", json={"owner": "web-operator"}).is_success
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    sign_in(page, console, token)
    try:
        yield page, owned
    finally:
        context.close()
        with console.http() as http:
            http.patch(f"/api/v1/toolboxes/{owned}", json={"owner": None})


def test_a_non_admin_sees_none_of_these_controls_and_is_refused_the_posts(
    user_page: tuple[Page, str], console: Console
) -> None:
    page, owned = user_page
    expect(page.locator("tr[data-toolbox=toolbox-3]")).to_have_count(1)
    expect(page.locator("#provision-form")).to_have_count(0)
    expect(page.locator("nav[aria-label=Main] a")).to_have_text(
        ["Toolboxes", "Rollouts", "Runs", "Alerts", "Audit"]
    )
    page.goto(f"{console.url}/toolboxes/{owned}")
    expect(page.locator("h1")).to_have_text("toolbox-3")
    expect(page.locator("#retire-form")).to_have_count(0)
    shown = page.goto(f"{console.url}/registries")
    assert shown is not None and shown.status == 403
    expect(page.locator("#registry-form")).to_have_count(0)

    # Posting anyway (with the session's own CSRF token): 403, and nothing happens.
    csrf = json.loads(page.locator("body").get_attribute("hx-headers") or "{}")["X-CSRF-Token"]
    posts = {
        "/toolboxes": {"name": "webprov-nope", "region": "fra1", "size": "s-1vcpu-1gb"},
        f"/toolboxes/{owned}/retire": {"confirm": "toolbox-3"},
        "/registries": {"registry": REGISTRY, "username": "u", "password": "p"},
        "/registries/remove": {"registry": REGISTRY},
    }
    for path, form in posts.items():
        answer = page.request.post(
            f"{console.url}{path}", form=form, headers={"X-CSRF-Token": csrf}
        )
        assert answer.status == 403, (path, answer.status, answer.text()[:300])
    with console.http() as http:
        listed = {t["name"]: t for t in http.get("/api/v1/toolboxes").json()}
        assert "webprov-nope" not in listed and listed["toolbox-3"]["removed_at"] is None
        assert listed["toolbox-3"]["active_run_id"] is None
        assert REGISTRY not in [r["registry"] for r in http.get("/api/v1/registries").json()]
