"""Drives the support page in headless Chromium (Debian's, through Playwright), with JavaScript off:
login, the overview, a search for a session whose webhook never came, "Reconcile this session",
then "Redeliver notification" on the order's timeline; checks what each page shows, that the
keyboard reaches the search box, and that the pages reflow at 400 % zoom. Saves a screenshot of
each page in SHOTS.

Env: BASE (http://127.0.0.1:PORT), TOKEN, SESSION (cs_…), CHROMIUM (the browser), SHOTS (a dir)."""

import os
import sys

from playwright.sync_api import sync_playwright

base, token, session = os.environ["BASE"], os.environ["TOKEN"], os.environ["SESSION"]
shots = os.environ["SHOTS"]
os.makedirs(shots, exist_ok=True)


page = None


def check(cond, what):
    if not cond:
        shown = page.inner_text("body")[:1500] if page else ""
        sys.exit(f"support page: {what}\nat {page.url if page else '?'}:\n{shown}")
    print(f"    ok: {what}")


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ["CHROMIUM"], args=["--no-sandbox"])
    page = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900}).new_page()

    page.goto(f"{base}/support")
    check(page.get_by_label("Admin token").is_visible(), "the login form has a labelled token field")
    page.screenshot(path=f"{shots}/1-login.png", full_page=True)
    page.get_by_label("Admin token").fill(token)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    check(page.get_by_role("heading", name="Overview").is_visible(), "logged in: the overview")
    page.screenshot(path=f"{shots}/2-overview.png", full_page=True)

    # The keyboard reaches the search box: Tab from the top of the page.
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "q":
            break
    check(page.evaluate("document.activeElement && document.activeElement.id") == "q",
          "the search box is reached with Tab")
    page.keyboard.type(session)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    check(page.get_by_text("Verdict:").is_visible(), "the search shows the timeline and its verdict")
    check(page.get_by_role("cell", name="pending", exact=True).first.is_visible(), "the order is pending")
    page.screenshot(path=f"{shots}/3-timeline.png", full_page=True)

    with page.expect_navigation():
        page.get_by_role("button", name="Reconcile this session").click()
    check(page.get_by_role("heading", name=f"Reconciled {session}").is_visible(), "the reconcile result")
    check(page.get_by_role("cell", name="paid", exact=True).first.is_visible(), "the order after: paid")
    page.screenshot(path=f"{shots}/4-reconciled.png", full_page=True)

    with page.expect_navigation():
        page.get_by_role("link", name=session).first.click()
    check(page.get_by_text("order.paid").first.is_visible(), "the order.paid notification is listed")
    with page.expect_navigation():
        page.get_by_role("button", name="Redeliver notification").first.click()
    check(page.get_by_text("queued for delivery again").is_visible(), "the redeliver result")
    page.screenshot(path=f"{shots}/5-redelivered.png", full_page=True)

    # 400 % zoom of a 1280-pixel window is a 320-pixel one: nothing wider than the window.
    page.set_viewport_size({"width": 320, "height": 900})
    page.goto(f"{base}/support/search?q={session}")
    width = page.evaluate("document.documentElement.scrollWidth")
    check(width <= 321, f"the timeline reflows at 400 % zoom (page width {width}px in a 320px window)")
    page.screenshot(path=f"{shots}/6-timeline-400-percent.png", full_page=True)
    browser.close()
print("support page: driven in a real browser")
