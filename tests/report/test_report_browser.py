"""report.html in a real browser: Debian's chromium driven by Selenium through chromium-driver.

The pages of the suite's tiny digits-noisy experiment and of its instance run are opened from disk as
a user opens them; the run's gallery is filtered, three cards are decided on and exported, and the
exported decisions.csv is fed back to ``keras-itl train --decisions`` to check the rerun did as asked.
Screenshots of every page go to the test's temporary folder. Without chromium the test fails, saying
what to install: it is never skipped.
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from keras_itl.cli.main import main
from keras_itl.experiment import train_command
from keras_itl.options import from_record
from keras_itl.transfer import TransferConfig

# Debian's packages, named explicitly so Selenium never looks for (or downloads) a driver of its own
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOWNLOAD_WAIT_SECONDS = 20  # how long the exported file may take to appear (it takes milliseconds)


@pytest.fixture
def browser(tmp_path):
    """A headless chromium that downloads into ``tmp_path/downloads`` and keeps the console log."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the report's browser test needs Debian's chromium and "
                    "chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(argument)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


def _open(driver, page: Path, screenshot: Path) -> None:
    """Load ``page`` from disk; check every image decoded and nothing was logged as an error; screenshot it."""
    driver.get(page.resolve().as_uri())
    images = driver.execute_script("return [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
    assert images and all(loaded for _, loaded in images), [alt for alt, loaded in images if not loaded]
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    driver.save_screenshot(str(screenshot))


def _cells(driver, table_id: str) -> list[list[str]]:
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")]


def _cards(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#gallery .card")


def _decide(card, value: str) -> None:
    Select(card.find_element(By.CSS_SELECTOR, "select.decision")).select_by_value(value)


def _export(driver) -> str:
    """Click export; the CSV shown on the page, after checking the downloaded decisions.csv holds the same."""
    for old in driver.downloads.iterdir():
        old.unlink()
    driver.find_element(By.ID, "export-decisions").click()
    shown = driver.find_element(By.ID, "decisions-csv").get_property("value")
    target = driver.downloads / "decisions.csv"
    deadline = time.monotonic() + DOWNLOAD_WAIT_SECONDS
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.read_text() == shown
    return shown


def _rerun_with(run_dir: Path, decisions: Path, output: Path) -> None:
    """``keras-itl train`` as the run was trained (the experiment's own command for it), with ``--decisions``."""
    config = json.loads((run_dir / "run.json").read_text())["config"]
    config = from_record(TransferConfig, config)
    args = shlex.split(train_command(config, output))[1:] + ["--decisions", str(decisions), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_report_pages_in_a_browser_and_their_decisions_rerun(tiny_noisy_experiment, browser, tmp_path):
    out = tiny_noisy_experiment.out
    results = json.loads((out / "results.json").read_text())

    # the experiment's page: its results table is results.json's, and it links to every run's page
    _open(browser, out / "report.html", tmp_path / "experiment.png")
    table = _cells(browser, "results-table")
    assert [(cells[0], cells[1], int(cells[2])) for cells in table] == [
        (row["arch"], row["method"], row["seeds"]) for row in results["rows"]]
    for cells, row in zip(table, results["rows"]):
        assert cells[3] == f"{row['test_error_mean']:.2f} ± {row['test_error_std']:.2f}"
        assert [float(value) for value in cells[4].split(", ")] == pytest.approx(row["test_errors"], abs=0.005)
        assert float(cells[5]) == pytest.approx(row["test_loss_mean"], abs=5e-5)
    assert len(_cells(browser, "runs-table")) == len(results["runs"])
    browser.find_element(By.LINK_TEXT, "small-cnn-seed0-instance-influence").click()

    # the instance run's page, reached by that link
    run_dir = out / "runs" / "small-cnn-seed0-instance-influence"
    assert Path(browser.current_url) == Path((run_dir / "report.html").resolve().as_uri())
    _open(browser, run_dir / "report.html", tmp_path / "run.png")
    record = json.loads((run_dir / "run.json").read_text())
    labels = {row.split(",")[0]: row.split(",")[1]
              for row in (run_dir / "influence.csv").read_text().splitlines()[1:]}
    assert browser.find_element(By.ID, "page-info").text.endswith(f"{len(labels)} of {len(labels)} instances")
    everything = [card.get_attribute("data-id") for card in _cards(browser)]
    flipped = set(record["dataset"]["flipped_ids"])
    marked = [card.get_attribute("data-id") for card in browser.find_elements(By.CSS_SELECTOR, "#gallery .card")
              if card.find_elements(By.CSS_SELECTOR, ".badge.flipped")]
    assert marked and set(marked) == flipped & set(everything)

    Select(browser.find_element(By.ID, "filter-class")).select_by_visible_text("3")
    threes = [card.get_attribute("data-id") for card in _cards(browser)]
    assert threes and threes != everything and {labels[i] for i in threes} == {"3"}
    assert len(threes) == sum(label == "3" for label in labels.values())
    Select(browser.find_element(By.ID, "filter-class")).select_by_visible_text("every class")

    first, second, third = _cards(browser)[:3]
    ids = [card.get_attribute("data-id") for card in (first, second, third)]
    new_label = "7" if labels[ids[1]] != "7" else "1"
    _decide(first, "drop")
    _decide(_cards(browser)[1], f"relabel:{new_label}")
    _decide(_cards(browser)[2], "keep")
    exported = _export(browser)
    assert exported == f"id,action,label\n{ids[0]},drop,\n{ids[1]},relabel,{new_label}\n{ids[2]},keep,\n"
    assert browser.find_element(By.ID, "decided-count").text == "3 decisions"
    browser.save_screenshot(str(tmp_path / "run-decided.png"))

    # the exported file, fed back: the rerun dropped, relabelled and pinned as asked, and says so
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(exported)
    rerun = tmp_path / "rerun"
    _rerun_with(run_dir, decisions, rerun)
    rerun_record = json.loads((rerun / "run.json").read_text())
    assert rerun_record["config"]["decisions"] == str(decisions)
    assert rerun_record["dataset"]["decisions"] == {"file": str(decisions), "keep": [ids[2]], "drop": [ids[0]],
                                                    "relabel": {ids[1]: new_label}}
    assert rerun_record["dataset"]["sizes"]["train"] == len(labels) - 1
    rerun_labels = {row.split(",")[0]: row.split(",")[1]
                    for row in (rerun / "influence.csv").read_text().splitlines()[1:]}
    assert ids[0] not in rerun_labels and rerun_labels[ids[1]] == new_label
    assert not {ids[1], ids[2]} & set(rerun_record["influence"]["selection"]["drop_ids"])

    # the rerun's page exports the decisions it was trained with, so the next round starts from them
    _open(browser, rerun / "report.html", tmp_path / "rerun.png")
    assert sorted(_export(browser).splitlines()) == sorted(exported.splitlines())
