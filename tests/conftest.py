from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import PIL
import pytest

from refbench.synth import SynthSpec, generate

REPO = Path(__file__).resolve().parent.parent
PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13  # resizes tall shrinking images vertically first
# The runs committed under results/, by id: tests read these and nothing else there, so runs a user
# adds (the demo's, say) change no test.
COMMITTED_RUNS = (
    "20261127-150632-synthref_testA-7c119f",
    "20261127-150640-synthref_testB-6eb84b",
    "20261127-150647-synthref+_testA-f648a2",
    "20261127-150653-synthref_baselines-74b542",
    "20261127-174851-synthref_prompt_table-d6db6f",
)


def committed_run(run_id: str) -> Path:
    """The folder of a committed run, named by its id."""
    assert run_id in COMMITTED_RUNS, run_id
    return REPO / "results" / run_id


TINY = SynthSpec(seed=3, images={"train": 48, "val": 12, "testA": 12, "testB": 12})


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SynthRef written by the real generator, shared read-only by the tests."""
    root = tmp_path_factory.mktemp("synthref")
    generate(root, TINY)
    return root


def bench_yaml(root: Path, methods: str, *, name: str = "tiny", splits: str = "[testA, testB]",
               proposer: str | None = None, extra: str = "") -> str:
    proposer = proposer or f"{{plugin: detections, path: {root}/dets/synthref_unc_dets.json}}"
    return f"""
name: {name}
dataset: {{plugin: refer, root: {root}, dataset: synthref, split_by: unc, splits: {splits}, images: {root}/images}}
proposer: {proposer}
{extra}
methods:
{methods}
"""


@pytest.fixture
def write_config(tmp_path: Path):
    def write(text: str, name: str = "bench.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    os.environ.pop("REFBENCH_RESULTS", None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run the tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: over a few seconds; runs only with --runslow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


INSTALL_CHROMIUM = "apt-get install chromium (Debian/Ubuntu; .ci/run installs it)"


def _chromium_path() -> str | None:
    """The first Chromium on PATH, or None."""
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


#: each browser test's node id and outcome, for the summary at the end of the run
_BROWSER_TESTS: dict[str, str] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    _BROWSER_TESTS.update({item.nodeid: "not run" for item in session.items if "chromium" in getattr(item, "fixturenames", ())})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid in _BROWSER_TESTS and (report.when == "call" or not report.passed):
        # a failure outside the test's call is an error, as pytest's own summary says
        _BROWSER_TESTS[report.nodeid] = "error" if report.failed and report.when != "call" else report.outcome


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """One line per browser test and its outcome, so a log (CI's) shows the pages were opened in a
    browser, not skipped."""
    if not _BROWSER_TESTS:
        return
    path = _chromium_path()
    terminalreporter.write_sep("-", f"browser tests ({path or 'no Chromium on PATH'})")
    for nodeid, outcome in _BROWSER_TESTS.items():
        terminalreporter.write_line(f"{outcome.upper()} {nodeid}")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Chromium's path, for the tests that open refbench's pages in a real browser. Where there is
    none the test skips loudly, naming the install command; with REFBENCH_REQUIRE_BROWSER set (as CI
    sets it) it fails instead."""
    path = _chromium_path()
    if path:
        return path
    message = f"no Chromium on PATH, so the page is not opened in a browser: {INSTALL_CHROMIUM}"
    if os.environ.get("REFBENCH_REQUIRE_BROWSER"):
        pytest.fail(message + " (REFBENCH_REQUIRE_BROWSER is set)")
    warnings.warn(message)
    pytest.skip(message)
