"""`predictions dashboard` and `predictions demo --dashboard` from an installed wheel, in a user's own
folder: the wheel ships the repository's app.py and pages/ (package data of a mapped package), and the
dashboard reads the store a training run in that folder writes to."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tomllib
from itertools import pairwise
from pathlib import Path

import pytest

from predictions.__main__ import main
from predictions.dashboard import server
from predictions.store import SQLiteStore
from predictions.store.settings import ENV_NAMES, StoreSettings
from predictions.store.sqlite import DEFAULT_DB_PATH
from tests.helpers import children, exited, free_port, lines_until, listening_on, wait_for_health, wait_until
from tests.helpers_browser import settle
from tests.seeding import write_job

ROOT = Path(__file__).resolve().parents[1]
APP_PACKAGES = {"predictions.dashboard.app", "predictions.dashboard.app.pages"}
"""The packages mapped to the repository root: app.py, and pages/ beside it."""
BUILT_FROM = ("pyproject.toml", "README.md", "LICENSE", "app.py", "pages", ".streamlit", "predictions")
JOB, JOB_NAME = "my-run", "My own fine-tune"


def test_the_wheel_lists_every_sub_package_on_disk():
    """`packages.find` cannot see a mapped package, so pyproject.toml lists them all: a sub-package
    added on disk and not listed would be missing from every wheel."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in ROOT.glob("predictions/**/__init__.py")
    }
    assert set(setuptools["packages"]) == on_disk | APP_PACKAGES
    assert setuptools["package-dir"] == {"predictions.dashboard.app": "."}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project built as a wheel and installed with `pip install --no-deps --target`: the folder to put
    on PYTHONPATH (the test's own environment gives the dependencies). Built from a copy of what the
    wheel is made of, because setuptools builds in the source folder: a stale build/ in the checkout would
    ship files deleted since, and the suite writes nothing into the checkout."""
    scratch = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, scratch / "source", ignore=_not_built_from)
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(scratch / "dist")]
    subprocess.run([*build, str(scratch / "source")], check=True, timeout=120)
    (wheel,) = (scratch / "dist").glob("*.whl")
    install = [*pip, "install", "--no-deps", "--no-compile", "--target", str(scratch / "site"), str(wheel)]
    subprocess.run(install, check=True, timeout=120)
    return scratch / "site"


def _not_built_from(folder: str, names: list[str]) -> set[str]:
    """What `copytree` leaves out: at the top, all but BUILT_FROM; anywhere, bytecode caches."""
    kept = set(BUILT_FROM) if Path(folder) == ROOT else set(names)
    return {name for name in names if name not in kept or name == "__pycache__"}


def test_the_wheel_ships_the_repositorys_own_app_and_pages(installed):
    app = installed / "predictions" / "dashboard" / "app"
    shipped = {path.relative_to(app).as_posix() for path in app.rglob("*") if path.is_file()}
    expected = {
        "app.py",
        ".streamlit/config.toml",
        *(f"pages/{page.name}" for page in ROOT.glob("pages/*.py")),
    }
    assert shipped == expected
    assert all((app / name).read_bytes() == (ROOT / name).read_bytes() for name in expected)


def project_with_a_run(folder: Path) -> Path:
    """A user's training project: the store its run wrote (the default file), and a `predictions.py` of
    its own, which must not replace the package in the dashboard."""
    store = SQLiteStore(folder / DEFAULT_DB_PATH)
    write_job(store, JOB, rounds=2, samples=3, name=JOB_NAME)
    store.close()
    (folder / "predictions.py").write_text(
        "raise SystemExit('the project's own predictions.py was imported')\n"
    )
    return folder


def wheel_environment(installed: Path) -> dict[str, str]:
    """This environment with the wheel's folder as the only PYTHONPATH and no store chosen: the default
    file of the working folder is read."""
    unset = {"PYTHONPATH", "PREDICTIONS_DB", "SUPABASE_URL", "SUPABASE_KEY", "PREDICTIONS_INGEST_KEY"}
    return {**{k: v for k, v in os.environ.items() if k not in unset}, "PYTHONPATH": str(installed)}


def served_app(process: subprocess.Popen) -> tuple[int, list[str]]:
    """The dashboard process the command started, and its command line."""
    (dashboard,) = children(process.pid)
    return dashboard, Path(f"/proc/{dashboard}/cmdline").read_text().split("\0")


def repository_settings() -> set[tuple[str, str]]:
    """The options of the repository's .streamlit/config.toml, as Streamlit's flags spell them."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    spelled = {True: "true", False: "false"}
    return {(f"--{s}.{key}", spelled.get(v, v)) for s, table in config.items() for key, v in table.items()}


def streamlit_options(argv: list[str]) -> set[tuple[str, str]]:
    """The `--section.name value` pairs of a `streamlit run` command line."""
    return {(name, value) for name, value in pairwise(argv) if name.startswith("--")}


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.xdist_group("browser")  # the worker whose Chromium is already running
def test_predictions_dashboard_from_a_wheel_serves_the_store_of_the_folder_it_runs_in(
    installed, tmp_path, page
):
    project, port = project_with_a_run(tmp_path), free_port()
    command = [sys.executable, "-P", "-m", "predictions", "dashboard", "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=project, env=wheel_environment(installed), stdout=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, which Ctrl-C at a terminal signals as a whole
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        assert process.stdout.readline() == f"Dashboard: {url}  (reading {project / DEFAULT_DB_PATH})\n"
        assert wait_for_health(url, process) == "ok"
        dashboard, argv = served_app(process)
        assert str(installed / "predictions" / "dashboard" / "app" / "app.py") in argv
        assert streamlit_options(argv) >= repository_settings()  # they hold outside the repository too
        assert listening_on(port) == {"127.0.0.1"}
        page.goto(url)
        page.locator('[data-testid="stMain"]').get_by_text(JOB_NAME).first.wait_for(timeout=60_000)
        settle(page)
        sidebar = page.locator('[data-testid="stSidebar"]')
        assert sidebar.get_by_text(f"SQLite at {DEFAULT_DB_PATH}").count() == 1  # this folder's default file
        assert page.get_by_text("Traceback").count() == 0
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=30) == 0
        wait_until(
            lambda: exited(dashboard), 20, interval_s=0.2, what="the dashboard ending with the command"
        )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert listening_on(port) == set()


@pytest.mark.slow
def test_the_demo_dashboard_from_a_wheel_reads_the_file_the_demo_trains_into(installed, tmp_path):
    port = free_port()
    demo = ["demo", "--dashboard", "--port", str(port), "--epochs", "1", "--steps-per-epoch", "1"]
    demo += ["--rounds-per-epoch", "1", "--learning-rates", "1e-3", "--job-id", "wheel-demo"]
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    env = wheel_environment(installed)
    (tmp_path / ".env").write_text(SUPABASE_ENV_FILE)  # a user's team store: not the demo's file
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "predictions", *demo], cwd=tmp_path, env=env, **output
    )
    try:
        lines = lines_until(process.stdout, "Training done")
        db = tmp_path / DEFAULT_DB_PATH
        assert f"Dashboard: http://127.0.0.1:{port}  (reading {db})\n" in lines, lines
        assert wait_for_health(f"http://127.0.0.1:{port}", process) == "ok"
        dashboard, argv = served_app(process)
        assert str(installed / "predictions" / "dashboard" / "app" / "app.py") in argv
        environ = Path(f"/proc/{dashboard}/environ").read_text().split("\0")
        assert f"PREDICTIONS_DB={db}" in environ
        served = dict(item.split("=", 1) for item in environ if "=" in item)
        assert chosen_store(served, tmp_path) == str(db)  # over the .env's Supabase
        assert [job.id for job in SQLiteStore(db).list_jobs()] == ["wheel-demo"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        wait_until(lambda: exited(dashboard), 20, interval_s=0.2, what="the dashboard ending with the demo")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


SUPABASE_ENV_FILE = "SUPABASE_URL=https://example.supabase.co\nSUPABASE_KEY=sb_publishable_abc\n"


def chosen_store(environ: dict[str, str], folder: Path) -> str:
    """The store a dashboard with `environ`, run in `folder`, opens: its SQLite path or its URL."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        settings = StoreSettings.from_env(environ=environ)
        settings.check()
        return settings.supabase_url if settings.uses_supabase else str(Path(settings.db_path))
    finally:
        os.chdir(cwd)


def test_db_reads_that_file_even_where_a_env_file_names_supabase(tmp_path, monkeypatch, capsys):
    """`--db` says which file to read: a `.env` here naming a team's Supabase (which an empty variable
    cannot unset) must not turn it into a dashboard of that store."""
    (tmp_path / ".env").write_text(SUPABASE_ENV_FILE)
    for name in ENV_NAMES.values():
        monkeypatch.delenv(name, raising=False)
    started = []
    monkeypatch.setattr(server, "start", lambda port, address, env: started.append(env) or Exited())
    monkeypatch.chdir(tmp_path)
    assert chosen_store(dict(os.environ), tmp_path) == "https://example.supabase.co"  # without --db
    assert main(["dashboard", "--db", "other.db"]) == 0
    assert f"(reading {tmp_path / 'other.db'}, not there yet" in capsys.readouterr().out
    assert chosen_store(started[0], tmp_path) == str(tmp_path / "other.db")


class Exited:
    """A dashboard process that has already ended, cleanly."""

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def poll(self) -> int:
        return 0
