"""The browser console as a first-time user meets it: it says that Python is starting
and keeps its Submit buttons off until then; on a narrow screen a long input or output
wraps instead of making the page scroll sideways."""

from __future__ import annotations

from console_tab import READY_TIMEOUT_MS, ConsoleTab, console_url
from playwright.sync_api import BrowserContext, expect

STATE = """() => ({
  ready: document.body.dataset.ready === 'true',
  submitOff: document.querySelector('#submit').disabled,
  mixOff: document.querySelector('#submit-mix').disabled,
  loadingShown: getComputedStyle(document.querySelector('#loading')).display !== 'none',
})"""


# What reaches past the right edge of the page, to say what made it scroll sideways.
WIDER_THAN_THE_PAGE = """() => [...document.querySelectorAll('*')]
  .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .map((e) => `${e.tagName.toLowerCase()}.${e.className}#${e.id}`).slice(0, 10)"""


def open_ready(context: BrowserContext, queue: str, width: int | None = None) -> ConsoleTab:
    """A new tab of the console of `queue` (`width` px wide), once it is up."""
    page = context.new_page()
    if width is not None:
        page.set_viewport_size({"width": width, "height": 800})
    page.goto(console_url(queue))
    tab = ConsoleTab(page)
    tab.wait_ready()
    return tab


def test_the_console_says_it_is_starting_and_submits_only_once_ready(
    watched_context: BrowserContext, queue_name: str
) -> None:
    page = watched_context.new_page()
    page.goto(console_url(queue_name), wait_until="domcontentloaded")
    # Whenever it is looked at before it is ready, it says so and cannot submit.
    state = page.evaluate(STATE)
    if not state["ready"]:
        assert state["submitOff"] and state["mixOff"] and state["loadingShown"], state
    tab = ConsoleTab(page)
    tab.wait_ready()
    assert page.evaluate(STATE) == {
        "ready": True,
        "submitOff": False,
        "mixOff": False,
        "loadingShown": False,
    }
    expect(page.locator("#loading")).to_be_hidden(timeout=READY_TIMEOUT_MS)


def test_a_long_input_wraps_on_a_narrow_screen(
    watched_context: BrowserContext, queue_name: str
) -> None:
    tab = open_ready(watched_context, queue_name, width=420)
    page = tab.page
    # A kind no server runs: the job stays listed with its long input.
    job_id = tab.run_python(
        "h = await client.submit({'note': 'x' * 600, 'path': '/a' * 200}, kind='nobody')\nh.id"
    )
    expect(tab.job(job_id)).to_have_attribute("data-status", "PENDING")
    widths = page.evaluate(
        "() => [document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]"
    )
    wide = page.evaluate(WIDER_THAN_THE_PAGE)
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}, {wide}"


def test_the_list_shows_a_page_and_says_how_many_jobs_there_are(
    watched_context: BrowserContext, queue_name: str
) -> None:
    tab = open_ready(watched_context, queue_name)
    page = tab.page
    label = page.locator("#page-label")
    rows = page.locator("#job-list li.job")
    # A kind no server runs: all of them stay pending, more than a page holds.
    ids = tab.run_python(
        "[h.id for h in await client.submit_batch([{'n': n} for n in range(120)], kind='nobody')]"
    )
    expect(label).to_have_text("1\N{EN DASH}50 of 120")
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-job-id", str(ids[-1]))
    expect(page.locator('[data-stat="pending"]')).to_have_text("120")
    page.locator("#older").click()
    expect(label).to_have_text("51\N{EN DASH}100 of 120")
    expect(rows.first).to_have_attribute("data-job-id", str(ids[-51]))
    page.locator("#older").click()
    expect(label).to_have_text("101\N{EN DASH}120 of 120")
    expect(rows).to_have_count(20)
    expect(page.locator("#older")).to_be_disabled()
    page.locator("#newer").click()
    expect(label).to_have_text("51\N{EN DASH}100 of 120")


def test_the_job_id_opens_every_field_of_the_job(
    watched_context: BrowserContext, queue_name: str
) -> None:
    tab = open_ready(watched_context, queue_name)
    page = tab.page
    long_note = "n" * 300
    job_id = tab.run_python(
        f"h = await client.submit({{'note': '{long_note}'}}, kind='nobody', priority=4)\nh.id"
    )
    tab.job(job_id).locator(".job-id").click()
    dialog = page.locator("#job-detail")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text(f"Job #{job_id} · pending")
    fields = dialog.locator("dt")
    for name in ("input", "status", "priority", "depends_on", "created_at", "run_attempts"):
        expect(fields.filter(has_text=name).first).to_be_visible()
    expect(dialog.locator("dd pre").filter(has_text=long_note)).to_have_count(1)  # in full
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
