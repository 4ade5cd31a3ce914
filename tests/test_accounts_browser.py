"""A real Chromium: an admin creates a user on /admin/users, who logs in with the shown password and changes it."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD
from tests.test_up_and_browser import ARTIFACTS

SHOTS = ARTIFACTS
LAPTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def log_in(page, live_url: str, email: str, password: str, next_path: str) -> None:
    page.goto(f"{live_url}/login?next={next_path}")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_url}{next_path}")


def assert_fits(page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page scrolls sideways ({scroll} px on a {width} px screen)"


@pytest.mark.browser
def test_an_admin_creates_a_user_who_changes_the_password(live_url, chromium, make_user):
    SHOTS.mkdir(parents=True, exist_ok=True)
    make_user("admin@example.org", admin=True)
    make_user("ana@example.org")

    admin = chromium.new_context(**LAPTOP).new_page()
    log_in(admin, live_url, "admin@example.org", PASSWORD, "/admin/users")
    admin.wait_for_selector('tr[data-email="ana@example.org"]')
    admin.fill("#new-user input[name=email]", "bob@example.org")
    admin.fill("#new-user input[name=name]", "Bob Lab")
    admin.click("#new-user button[type=submit]")
    admin.wait_for_selector("#password-once:not([hidden])")
    password = admin.input_value("#password-once-value")
    assert len(password) >= 12 and "bob@example.org" in admin.inner_text("#password-once-text")
    row = 'tr[data-email="bob@example.org"]'
    admin.wait_for_selector(row)
    assert "Bob Lab" in admin.inner_text(row) and "never" in admin.inner_text(row)
    assert admin.is_visible(f'{row} [data-action="deactivate"]')
    assert admin.is_visible(f'{row} [data-action="grant-admin"]')
    assert not admin.is_visible('tr[data-email="admin@example.org"] [data-action="deactivate"]')  # not yourself
    admin.screenshot(path=str(SHOTS / "users-laptop.png"), full_page=True)

    bob_laptop = chromium.new_context(**LAPTOP)
    bob = bob_laptop.new_page()
    log_in(bob, live_url, "bob@example.org", password, "/account")
    assert "bob@example.org" in bob.inner_text("#account-email") and "Bob Lab" in bob.inner_text("#account-name")
    bob.click("header a.who")  # the header name leads to the account page
    bob.wait_for_selector('.session[data-current="true"]')
    assert "this browser" in bob.inner_text('.session[data-current="true"]').lower()
    assert "active now" in bob.inner_text('.session[data-current="true"]')
    bob.fill("input[name=current_password]", "not my password")
    bob.fill("input[name=new_password]", "bob's own password")
    bob.fill("input[name=repeat_password]", "bob's own password")
    bob.click("#password-form button[type=submit]")
    bob.wait_for_selector("#password-status.bad")
    assert "current password is wrong" in bob.inner_text("#password-status")
    bob.fill("input[name=current_password]", password)
    bob.fill("input[name=new_password]", "bob's own password")
    bob.fill("input[name=repeat_password]", "bob's own password")
    bob.click("#password-form button[type=submit]")
    bob.wait_for_selector("#password-status.ok")
    assert "Password changed" in bob.inner_text("#password-status")
    bob.screenshot(path=str(SHOTS / "account-laptop.png"), full_page=True)

    phone = chromium.new_context(**PHONE).new_page()
    log_in(phone, live_url, "bob@example.org", "bob's own password", "/account")
    phone.wait_for_selector(".session:not([data-current=true])")
    assert phone.locator(".session").count() == 2
    assert_fits(phone, 390)
    phone.screenshot(path=str(SHOTS / "account-phone.png"), full_page=True)
    phone.click("#end-others")
    phone.wait_for_function("document.querySelectorAll('.session').length === 1")
    assert "Logged out 1 other session" in phone.inner_text("#sessions-note")
    bob.goto(f"{live_url}/account")
    assert "/login" in bob.url, "the laptop was logged out from the phone"

    admin.reload()
    admin.wait_for_selector(row)
    assert "never" not in admin.inner_text(row)  # bob's last login shows
    admin_phone = chromium.new_context(**PHONE).new_page()
    log_in(admin_phone, live_url, "admin@example.org", PASSWORD, "/admin/users")
    admin_phone.wait_for_selector(row)
    assert_fits(admin_phone, 390)
    admin_phone.screenshot(path=str(SHOTS / "users-phone.png"), full_page=True)
