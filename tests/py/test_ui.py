"""The web view (/ui) in a real headless Chromium (Debian's package, driven by Playwright's
Python driver through executable_path: no browser is downloaded) against the running fleet:
sign in with the token, see the jobs with status and progress, open one job's timeline (a lane
per stage, a bar per analyzer coloured by status, the error on hover), the queues and the
workers consuming them; screenshots go to the test output (target/py-tests/ui-*.png)."""

from __future__ import annotations

import os
import shutil
import urllib.request

import pytest

from fleet_fixture import FAILING, out_dir

CHROMIUM = os.environ.get("FLEET_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} missing: run scripts/setup-tools.sh (apt chromium)")
    with sync_playwright() as p:
        # A persistent context: a fresh --user-data-dir of our own, no shared profile.
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=ARGS, viewport={"width": 1400, "height": 1000})
        yield ctx
        ctx.close()


def test_the_page_wants_the_token(fleet):
    req = urllib.request.Request(fleet.http_url + "/ui/api/overview")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    status, body, headers = fleet.get("/ui", token=False)
    assert status == 401 and b'name="token"' in body  # the login form, not the data
    assert fleet.get("/ui/api/overview")[0] == 200  # the bearer token opens it too


def test_the_web_view_shows_jobs_timeline_queues_and_workers(fleet, browser):
    with fleet.client() as c:
        done = c.submit_http("/videos/ui-<b>bold</b>.mp4", analyzers=["cut_analysis", "color_analysis",
                                                                        "audio_analysis", FAILING])
        c.wait(done.job_id, timeout=60)

    page = browser.new_page()
    page.goto(fleet.http_url + "/ui")
    assert page.locator("input[name=token]").count() == 1  # not signed in: the form
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    assert "not the dispatcher's token" in page.locator("[data-testid=login-problem]").inner_text()
    page.fill("input[name=token]", fleet.token)
    page.click("button[type=submit]")
    page.wait_for_selector(f"tr[data-job-id='{done.job_id}']")
    # The session cookie is a digest of the token: it opens /ui, never the API.
    cookie = next(c for c in browser.cookies() if c["name"] == "fleet_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != fleet.token
    api = urllib.request.Request(fleet.http_url + "/v1/jobs", headers={"Authorization": f"Bearer {cookie['value']}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(api, timeout=10)
    assert e.value.code == 401

    row = page.locator(f"tr[data-job-id='{done.job_id}']")
    assert row.locator("[data-testid=status]").inner_text() == "completed"
    assert "4/4" in row.inner_text()
    # Hostile text stays text: the markup in the video name is shown, not rendered.
    assert "ui-<b>bold</b>.mp4" in row.locator("td.video").inner_text()
    assert page.locator("td.video b").count() == 0

    # Queues: every stage queue of this fleet's prefix, with the live consumers: one worker
    # per class, one consumer per slot (config/fleet.toml's concurrency).
    page.wait_for_selector(f"tr[data-queue='{fleet.prefix}.stage1']")
    slots = {"stage1": 2, "stage2": 3, "stage3": 4, "stage4": 4, "cpu": 8}
    for stage, n in slots.items():
        consumers = page.locator(f"tr[data-queue='{fleet.prefix}.{stage}'] [data-testid=consumers]").inner_text()
        assert consumers == str(n), f"{stage}: {consumers} consumers"
    # Workers: the two worker processes and what they consume (from the management API).
    page.wait_for_selector(f"tr[data-process='{fleet.prefix}-gpu']")
    gpu = page.locator(f"tr[data-process='{fleet.prefix}-gpu']").inner_text()
    assert "stage1" in gpu and "stage4" in gpu
    assert "cpu" in page.locator(f"tr[data-process='{fleet.prefix}-cpu']").inner_text()

    # One job as a timeline.
    row.locator("a").click()
    page.wait_for_selector("[data-testid=timeline] .lane")
    lanes = page.locator("[data-testid=timeline] .lane")
    assert sorted(lanes.evaluate_all("ls => ls.map(l => l.dataset.stage)")) == ["cpu", "stage3", "stage4"]
    bar = page.locator(".lane[data-stage=stage4] .bar[data-analyzer=cut_analysis]")
    assert bar.get_attribute("data-state") == "ok"
    assert bar.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(46, 157, 91)"
    failed = page.locator(f".lane[data-stage=cpu] [data-analyzer={FAILING}]")
    assert failed.get_attribute("data-state") == "failed"
    assert "error: synthetic permanent failure" in failed.get_attribute("title")
    assert failed.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(214, 69, 69)"
    assert "SYNTHETIC" in bar.get_attribute("title")  # stand-ins are labelled
    page.screenshot(path=str(out_dir() / "ui-job.png"), full_page=True)

    page.close()
