"""Every page of the built book in a real browser (headless Chromium, through Selenium).

What a reader would hit: mathematics left as raw TeX, an image that does not load, a script error
in the console, a solution that does not open, a Colab button pointing to a notebook that is not in
the repository, and, at the book's desktop width, a figure shrunk until its text is unreadable, a
table or equation cut off, a code line behind a scrollbar. A screenshot of every page is kept in
``_build/screenshots/`` for review.

Needs Chromium (or Chrome) and ``chromedriver`` (Debian: ``apt-get install chromium chromium-driver``);
``.ci/run`` installs them. Without them the module is skipped with that reason. ``ADVCOURSE_BOOK=_build``
checks an existing build instead of building the book.
"""

import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"
DESKTOP, PHONE = 1280, 390
# Matplotlib's inline figures: 100 dots per inch (the inline backend's default) and text of at
# least 8 points (advcourse.plot's style), so a figure shown at scale s has text of
# 8 * 100 / 72 * s pixels; below 7 px it is unreadable.
FIGURE_DPI, SMALLEST_FONT_PT, SMALLEST_TEXT_PX = 100, 8, 7.0

CHROME = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)

pytestmark = [pytest.mark.book, pytest.mark.skipif(
    not (CHROME and shutil.which("chromedriver")),
    reason="headless Chromium not installed (apt-get install chromium chromium-driver)")]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROME
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--allow-file-access-from-files", f"--window-size={DESKTOP},900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    yield driver
    driver.quit()


def pages(book) -> list[pathlib.Path]:
    html = book / "html"
    skip = ("_static", "_sources")  # theme fragments and page sources, not pages
    return sorted(p for p in html.rglob("*.html") if p.name not in ("search.html", "genindex.html")
                  and p.relative_to(html).parts[0] not in skip)


def open_page(driver, page: pathlib.Path, width: int = DESKTOP) -> list[dict]:
    """Load ``page`` at ``width``, wait for MathJax, and return the console messages it logged."""
    driver.set_window_size(width, 900)
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(page.as_uri())
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (window.MathJax && MathJax.startup && MathJax.startup.promise)"
        "  MathJax.startup.promise.then(() => done(true), () => done(false));"
        "else done(true);")
    return driver.get_log("browser")


def test_every_page_renders_its_math_images_and_scripts_without_errors(book, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    for page in pages(book):
        name = page.relative_to(book / "html").as_posix()
        log = open_page(browser, page)
        errors = [e["message"] for e in log if e["level"] == "SEVERE"]
        if errors:
            problems.append(f"{name}: console errors {errors[:3]}")
        raw_tex = browser.execute_script(
            "return Array.from(document.querySelectorAll('.math')).filter("
            "  m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60));")
        if raw_tex:
            problems.append(f"{name}: math left as TeX {raw_tex[:3]}")
        broken = browser.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
            ".map(i => i.getAttribute('src'));")
        if broken:
            problems.append(f"{name}: images that do not load {broken[:3]}")
        height = browser.execute_script("return document.body.scrollHeight;")
        browser.set_window_size(DESKTOP, min(height, 30_000))
        browser.save_screenshot(str(SCREENSHOTS / (name.replace("/", "__").removesuffix(".html") + ".png")))
    assert not problems, "\n".join(problems)


def test_solutions_open_when_clicked(book, browser):
    open_page(browser, book / "html" / "chapters" / "01_linear_explanation.html")
    solution = browser.find_element("css selector", ".solution.dropdown")
    body = solution.find_element("css selector", "section")
    assert not body.is_displayed(), "a solution is shown before the reader asks for it"
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", solution)
    solution.find_element("css selector", "button.toggle-button").click()  # the title itself links to the exercise
    # the toggle animates its opening: wait for it (up to 5 s) instead of reading the first frame
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        WebDriverWait(browser, 5, poll_frequency=0.1).until(lambda _: body.is_displayed())
    except TimeoutException:
        pytest.fail("clicking the solution's toggle does not open it (waited 5 s)")


def test_colab_buttons_open_notebooks_that_are_in_the_repository(book, browser):
    tracked = set(subprocess.run(["git", "ls-files", "chapters"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.split())
    for page in sorted((book / "html" / "chapters").glob("*.html")):
        open_page(browser, page)
        links = browser.execute_script(
            "return Array.from(document.querySelectorAll('a[href*=\"colab.research.google.com\"]'))"
            ".map(a => a.href);")
        assert links, f"{page.name}: no Colab button"
        for link in links:
            notebook = re.search(r"/blob/main/(chapters/[^?#]+\.ipynb)", link)[1]
            assert (ROOT / notebook).exists(), link
            assert not tracked or notebook in tracked, f"{notebook} is not committed"


def layout_problems(driver) -> list[str]:
    """What does not fit the text column on the page loaded in ``driver``."""
    return driver.execute_script(f"""
        const problems = [];
        const wide = (e, slack = 2) => e.scrollWidth > e.clientWidth + slack;
        document.querySelectorAll('article img').forEach(img => {{
            if (!img.naturalWidth) return;
            const text_px = {SMALLEST_FONT_PT} * {FIGURE_DPI} / 72 * img.clientWidth / img.naturalWidth;
            if (text_px < {SMALLEST_TEXT_PX})
                problems.push(`figure ${{img.getAttribute('src')}}: text ${{text_px.toFixed(1)}} px`);
        }});
        document.querySelectorAll('article mjx-container[display="true"]').forEach(m => {{
            if (wide(m)) problems.push(`equation cut off: ${{m.textContent.slice(0, 40)}}`);
        }});
        document.querySelectorAll('article table').forEach(t => {{
            const box = t.parentElement;
            if (wide(box) || t.getBoundingClientRect().width > box.getBoundingClientRect().width + 2)
                problems.push(`table overflows: ${{t.textContent.trim().slice(0, 40)}}`);
            t.querySelectorAll('td, th').forEach(c => {{
                if (c.textContent.trim().length > 8 && c.getBoundingClientRect().width < 48)
                    problems.push(`table column crushed: ${{c.textContent.trim().slice(0, 30)}}`);
            }});
        }});
        document.querySelectorAll('article .cell_input pre').forEach(pre => {{
            if (wide(pre)) problems.push(`code line scrolls: ${{pre.textContent.split('\\n')[0].slice(0, 50)}}`);
        }});
        return problems;""")


@pytest.mark.parametrize("chapter", sorted(p.stem for p in (ROOT / "chapters").glob("*.md")))
def test_every_chapter_fits_the_text_column_at_desktop_width(book, browser, chapter):
    open_page(browser, book / "html" / "chapters" / f"{chapter}.html", DESKTOP)
    problems = layout_problems(browser)
    assert not problems, f"{chapter} at {DESKTOP} px:\n" + "\n".join(problems)


def test_pages_are_usable_on_a_phone(book, browser):
    """At 390 px only the page itself must not scroll sideways (tables and equations may, inside their box)."""
    for page in pages(book):
        open_page(browser, page, PHONE)
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
        assert overflow <= 2, f"{page.name} scrolls sideways by {overflow} px at {PHONE} px"
