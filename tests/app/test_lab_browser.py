"""The study as its users meet it: JupyterLab in headless Chromium on a finished smoke run.

Opens JupyterLab (started as ``make lab`` starts it) on a project folder holding a smoke run,
runs notebooks 06 (the query browser on that run) and 00 (a new run) in the page, and checks
what a person would see: notebooks open unmodified, figures are images (never the text
``<Figure size ...>``), typing a caption shows thumbnails, picking an image shows captions,
changing the model answers again, an executed copy reopens with its figures and its widget
(no "Error displaying widget"), the executed 07 opens clean with its "how to make a ladder"
note, and the server log holds no warning. Screenshots go to
``outputs/browser-test/``. Skipped, with the reason, where Chromium or Playwright is missing;
in CI (``CI`` set) that fails instead.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_harness import (
    ROOT,
    LabServer,
    SmokeProject,
    chromium_page,
    in_ci,
    lab_server,
    open_notebook,
    opens_unmodified,
    run_all_cells,
    skip_reason,
    voila_server,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(skip_reason()) and not in_ci(), reason=skip_reason() or "runs"),
]

SHOTS = ROOT / "outputs" / "browser-test"
CAPTION = "a blue square on a grey background"


@pytest.fixture(scope="session", autouse=True)
def browser_in_ci() -> None:
    """In CI a missing Chromium or Playwright is an error, not a skip (``.ci/run`` installs
    Chromium); session-scoped and autouse, so it fails before the smoke run is made."""
    if skip_reason():
        pytest.fail(f"CI is set, but the browser tests cannot run: {skip_reason()}")


@pytest.fixture(scope="module")
def project(smoke_project: SmokeProject) -> SmokeProject:
    """The session's finished smoke run (conftest.py), made with Curve-encrypted kernels."""
    assert (smoke_project.run / "finished.json").is_file()
    assert "without encryption" not in smoke_project.stdout + smoke_project.stderr
    return smoke_project


@pytest.fixture(scope="module")
def lab(project: SmokeProject) -> Iterator[LabServer]:
    with lab_server(project.home, project.env, project.state / "lab.log") as server:
        yield server


@pytest.fixture(scope="module")
def sealed(project: SmokeProject) -> dict[str, int]:
    """The finished run's files before any notebook ran in the page."""
    return _files(project.run)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with chromium_page(tmp_path_factory.mktemp("chromium-profile")) as page:
        yield page


def _shot(target: Any, name: str) -> None:
    target.screenshot(path=str(SHOTS / f"{name}.png"))


def _files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its modification time (ns)."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _contents(server: LabServer, path: str) -> dict[str, Any]:
    """The server's contents model of ``path`` (without its content)."""
    url = f"{server.url}/api/contents/{path}?content=0&token={server.token}"
    with urllib.request.urlopen(url, timeout=30) as reply:
        return json.loads(reply.read())


def _save_status(server: LabServer, path: str) -> tuple[int, str]:
    """What the server answers to saving ``path`` with its own content (the request
    JupyterLab sends on File > Save): the HTTP status and the message."""
    url = f"{server.url}/api/contents/{path}?token={server.token}"
    with urllib.request.urlopen(url, timeout=30) as reply:
        model = json.loads(reply.read())
    body = json.dumps({k: model[k] for k in ("type", "format", "content")}).encode()
    request = urllib.request.Request(url, data=body, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, ""
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read()).get("message", "")


def _texts(scope: Any, selector: str) -> list[str]:
    return scope.locator(selector).all_inner_texts()


def _wait_changed(scope: Any, selector: str, before: list[str], timeout_s: float = 60) -> None:
    """Wait until the texts of ``selector`` in ``scope`` differ from ``before`` (the widget
    answered)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = _texts(scope, selector)
        if now and now != before:
            return
        time.sleep(0.2)
    raise AssertionError(f"{selector} still shows {before} after {timeout_s} s")


def _drive_browser(browser: Any, prefix: str) -> None:
    """What a user does with the query browser (``browser``: its outer box), checked after
    each step, with a screenshot of the widget after each."""
    hits = browser.locator("figure.xmr-hit img")
    hits.first.wait_for()  # the example query was typed in: thumbnails from the start
    note = browser.locator(".widget-html-content", has_text="Answering with").inner_text()
    assert re.search(r"Answering with \w+/\w+", note), note
    example = _texts(browser, "figure.xmr-hit figcaption")
    caption_box = browser.locator(".widget-text input[type=text]")
    caption_box.fill(CAPTION)
    caption_box.press("Enter")
    _wait_changed(browser, "figure.xmr-hit figcaption", example)
    assert hits.count() == min(5, len(example)) > 0  # top k, or the whole (tiny) test split
    first = hits.first.bounding_box()
    assert first and first["width"] >= 150, f"thumbnails too small to judge: {first}"
    _shot(browser, f"{prefix}-text-query")

    browser.locator(".lm-TabBar-tab", has_text="image → text").click()
    captions = browser.locator("li.xmr-caption")
    captions.first.wait_for()  # the first image's captions are shown before any pick
    before = _texts(browser, "li.xmr-caption")
    picker = browser.locator(".widget-dropdown", has_text="image").locator("select")
    picker.select_option(index=picker.locator("option").count() - 1)
    _wait_changed(browser, "li.xmr-caption", before)
    assert captions.count() == 5
    assert browser.locator("figure.xmr-hit img:visible").count() == 0, "tab 1 shows through tab 2"
    _shot(browser, f"{prefix}-image-query")

    models = browser.locator(".widget-dropdown", has_text="model").locator("select")
    labels = [t.replace("\xa0", " ") for t in models.locator("option").all_inner_texts()]
    names = [label.split(" · ")[0] for label in labels]
    assert len(labels) == 4 and note.startswith(f"Answering with {names[0]}:"), (labels, note)
    for name, label in zip(names, labels, strict=True):  # collapsed: marked and named
        assert ("COLLAPSED" in label) == (name in note.split("Collapsed", 1)[-1]), label
    shown = _texts(browser, "li.xmr-caption")
    models.select_option(index=len(labels) - 1)  # another model: other captions or scores
    _wait_changed(browser, "li.xmr-caption", shown)
    _shot(browser, f"{prefix}-other-model")


def _figure_checks(panel: Any, at_least: int) -> None:
    images = panel.locator(".jp-OutputArea-output img")
    assert images.count() >= at_least, f"{images.count()} inline images, {at_least} expected"
    outputs = " ".join(panel.locator(".jp-OutputArea-output").all_inner_texts())
    assert "<Figure size" not in outputs, "a figure rendered as text"
    assert "Error displaying widget" not in outputs
    assert "Traceback" not in outputs and "Warning" not in outputs
    stderr = panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert stderr.count() == 0, f"warning blocks: {stderr.all_inner_texts()}"


def test_query_browser_in_jupyterlab(lab: LabServer, page: Any, sealed: dict[str, int]) -> None:
    server = lab
    started = time.monotonic()
    panel = open_notebook(page, server, "notebooks/06_query_browser.ipynb")
    assert opens_unmodified(page), "06 opened modified (its metadata is not the kernel's)"
    run_all_cells(page)
    browser = panel.locator(".jp-OutputArea-output .widget-vbox").first
    browser.locator("figure.xmr-hit img").first.wait_for()
    browser.scroll_into_view_if_needed()
    _shot(page, "06-opened")
    _drive_browser(browser, "06")
    _figure_checks(panel, at_least=4)  # the example query per model: HTML thumbnails
    print(f"06 in JupyterLab: {time.monotonic() - started:.0f} s")


def test_query_browser_as_a_standalone_app(
    project: SmokeProject, page: Any, sealed: dict[str, int]
) -> None:
    """Voilà on notebook 06 (what ``make browse`` starts): the widget alone, live."""
    pytest.importorskip("voila", reason="no Voilà: pip install -e '.[dev]' (voila==0.5.13)")
    notebook = project.home / "notebooks" / "06_query_browser.ipynb"
    with voila_server(notebook, project.env, project.state / "voila.log") as server:
        page.goto(f"{server.url}/?token={server.token}")
        browser = page.locator(".widget-vbox").first
        browser.locator("figure.xmr-hit img").first.wait_for()
        _shot(page, "voila-opened")
        _drive_browser(browser, "voila")
        text = page.locator("body").inner_text()
        assert "Traceback" not in text and "Error displaying widget" not in text
        assert "Warning" not in text
        assert "run_dir" not in text  # the code cells are not shown
        log = server.log_text()
    assert "without encryption" not in log and "Running as root" not in log
    assert _files(project.run) == sealed, "Voilà wrote into the finished run"


def test_figures_inline_live_and_in_executed_copies(
    project: SmokeProject, lab: LabServer, page: Any, sealed: dict[str, int]
) -> None:
    """Runs 00 live, which starts a new run (LATEST moves to it): so after the 06 tests."""
    server, home, run = lab, project.home, project.run
    panel = open_notebook(page, server, "notebooks/00_data.ipynb")
    assert opens_unmodified(page), "00 opened modified"
    run_all_cells(page)
    _figure_checks(panel, at_least=2)  # caption lengths, sample images
    panel.locator(".jp-OutputArea-output img").first.scroll_into_view_if_needed()
    _shot(page, "00-live-figures")

    executed = run.relative_to(home) / "executed"
    panel = open_notebook(page, server, f"{executed}/04_evaluate.ipynb")
    _figure_checks(panel, at_least=1 + 8)  # rsum bars, two grids per model
    table = panel.locator(".jp-RenderedHTMLCommon table").first
    header = table.locator("thead tr").first.locator("th").all_inner_texts()
    assert "rsum" in header and "i2t_mAP@10" not in header, header  # the compact view
    assert len(header) <= 2 + 7, header  # (recipe, model) and rsum + six R@K
    table.scroll_into_view_if_needed()
    _shot(page, "04-executed-table")

    panel = open_notebook(page, server, f"{executed}/05_latent_space.ipynb")
    assert opens_unmodified(page), "an executed copy opened modified"
    _figure_checks(panel, at_least=5)
    panel.locator(".jp-OutputArea-output img").nth(1).scroll_into_view_if_needed()
    _shot(page, "05-executed-figures")

    panel = open_notebook(page, server, f"{executed}/06_query_browser.ipynb")
    assert opens_unmodified(page), "the executed 06 opened modified"
    saved = panel.locator(".jp-OutputArea-output .widget-vbox").first
    saved.locator("figure.xmr-hit img").first.wait_for()  # drawn from the saved widget state
    assert saved.locator(".widget-dropdown select").count() == 2
    _figure_checks(panel, at_least=5 + 4)  # the saved widget's thumbnails + the examples
    saved.scroll_into_view_if_needed()
    _shot(page, "06-executed-widget")

    panel = open_notebook(page, server, f"{executed}/07_why_collapse.ipynb")
    assert opens_unmodified(page), "the executed 07 opened modified"
    _figure_checks(panel, at_least=0)  # no ladder in a smoke home: the note says how to make one
    note = " ".join(panel.locator(".jp-RenderedMarkdown").all_inner_texts())
    assert "No collapse-ladder results" in note and "make bench-collapse" in note, note
    _shot(page, "07-executed-no-ladder")

    assert _contents(server, f"{executed}/06_query_browser.ipynb")["writable"] is False
    assert _contents(server, "notebooks/06_query_browser.ipynb")["writable"] is True
    assert _files(run) == sealed, "a notebook wrote into the finished run"
    log = server.log_text()
    alarms = ("without encryption", "Running as root", "websocket_ping_timeout", "Warning:")
    for alarm in alarms:  # "Warning:" catches Python warnings (DeprecationWarning: ...)
        assert alarm not in log, f"the server log warns: {alarm}"
    # jupyter_server notes every notebook this machine has not signed yet; the study's own
    # notebooks (no outputs) until they are first saved, but never an executed copy
    unsigned = re.compile(r"Notebook notebooks/\d\d_\w+\.ipynb is not trusted$")
    warnings = [w for w in log.splitlines() if w.startswith("[W ") and not unsigned.search(w)]
    assert not warnings, warnings
    # last (the server logs the refusal as a warning): JupyterLab's save of an executed copy
    status, message = _save_status(server, f"{executed}/06_query_browser.ipynb")
    assert status == 403 and "read-only" in message and "Save As" in message, (status, message)
    assert _files(run) == sealed, "a save wrote into the finished run"
