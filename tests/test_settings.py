"""StoreSettings: the one reader of the environment and `.env` that opens the store, places the
outbox and keys the dashboard's shared store."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from predictions.delivery.writer import Writer
from predictions.errors import ConfigError
from predictions.store import SQLiteStore, open_store
from predictions.store.settings import ENV_NAMES, StoreSettings


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No store variable set, the working directory an empty folder (so no `.env` is found)."""
    for name in ENV_NAMES.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return monkeypatch


def test_the_environment_wins_over_the_env_file_and_neither_is_changed(clean_env, tmp_path):
    (tmp_path / ".env").write_text(
        f"PREDICTIONS_DB={tmp_path / 'from-file.db'}\nPREDICTIONS_SPOOL={tmp_path / 'file-outbox.db'}\n"
    )
    clean_env.setenv("PREDICTIONS_DB", str(tmp_path / "from-env.db"))
    settings = StoreSettings.from_env()
    assert settings.db_path == str(tmp_path / "from-env.db")
    assert settings.outbox == str(tmp_path / "file-outbox.db")
    assert "PREDICTIONS_SPOOL" not in os.environ  # read, not loaded into the process
    store = open_store()
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "from-env.db"
    store.close()


def test_a_run_whose_store_cannot_open_keeps_its_calls_where_the_env_file_says(clean_env, tmp_path):
    """The outbox a run falls back to is the one of the store `open_store()` would open, `.env`
    included: the run's calls are found again once the store opens."""
    (tmp_path / ".env").write_text(f"PREDICTIONS_DB={tmp_path / 'runs.db'}\nSUPABASE_URL=\n")

    def never() -> SQLiteStore:
        raise ConfigError("not yet")

    writer = Writer(None, open_store=never, backoff_s=0.01)
    assert writer.spool_path == tmp_path / "runs.outbox.db"
    assert writer.key.store == f"sqlite:{tmp_path / 'runs.db'}"
    writer.close()


def test_a_half_made_supabase_configuration_names_the_missing_variable(clean_env, tmp_path):
    (tmp_path / ".env").write_text("SUPABASE_URL=https://abc.supabase.co\n")
    with pytest.raises(ConfigError, match="SUPABASE_KEY is not set but SUPABASE_URL is"):
        open_store()
    clean_env.setenv("PREDICTIONS_INGEST_KEY", "pmi_abc")
    with pytest.raises(ConfigError, match="PREDICTIONS_INGEST_KEY is set but SUPABASE_URL or SUPABASE_KEY"):
        StoreSettings.from_env(tmp_path / "absent.env").open_store()


@pytest.mark.parametrize("setting", list(ENV_NAMES))
def test_every_setting_changes_the_dashboards_store_key(clean_env, setting):
    """The dashboard shares one store per settings: a changed ingest key, user or outbox must open a
    new one (its old key left PREDICTIONS_INGEST_KEY and PREDICTIONS_USER_ID out)."""
    clean_env.setenv(ENV_NAMES[setting], "value-1")
    first = StoreSettings.from_env()
    clean_env.setenv(ENV_NAMES[setting], "value-2")
    second = StoreSettings.from_env()
    assert first != second and hash(first) != hash(second)
    assert replace(second, **{setting: "value-1"}) == first


def test_secrets_stay_out_of_the_settings_repr(clean_env):
    clean_env.setenv("SUPABASE_KEY", "sb_secret_do-not-log")
    clean_env.setenv("PREDICTIONS_INGEST_KEY", "pmi_do-not-log")
    assert "do-not-log" not in repr(StoreSettings.from_env())


def test_predictions_store_chooses_outright_over_a_env_file_naming_supabase(clean_env, tmp_path):
    """A folder whose `.env` names a team's Supabase (an empty variable cannot unset it): PREDICTIONS_STORE
    =sqlite reads the local file, its outbox beside it; a wrong value names the valid ones."""
    (tmp_path / ".env").write_text(
        "SUPABASE_URL=https://abc.supabase.co\nSUPABASE_KEY=sb_publishable_abc\nPREDICTIONS_INGEST_KEY=pmi_x\n"
    )
    assert StoreSettings.from_env().uses_supabase
    clean_env.setenv("PREDICTIONS_STORE", "sqlite")
    clean_env.setenv("PREDICTIONS_DB", str(tmp_path / "local.db"))
    settings = StoreSettings.from_env()
    store = settings.open_store()
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "local.db"
    store.close()
    assert settings.outbox_key()[0] == f"sqlite:{tmp_path / 'local.db'}"
    clean_env.setenv("PREDICTIONS_STORE", "postgres")
    with pytest.raises(
        ConfigError, match="PREDICTIONS_STORE='postgres' is invalid; valid: sqlite or supabase"
    ):
        open_store()


def test_predictions_store_supabase_without_its_settings_names_both(clean_env):
    clean_env.setenv("PREDICTIONS_STORE", "supabase")
    with pytest.raises(ConfigError, match="SUPABASE_URL and SUPABASE_KEY are not set; set both"):
        open_store()
