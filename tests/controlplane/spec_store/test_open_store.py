"""open_store(url) and default_data_dir(): which store a URL names."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusebox.controlplane.spec_store import DATABASE_FILE_NAME, default_data_dir, open_store
from fusebox.controlplane.spec_store.embedded import EmbeddedSpecStore
from fusebox.controlplane.spec_store.redis import RedisSpecStore
from tests.controlplane.spec_store.spec_store_cases import spec_write


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FUSEBOX_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_default_data_dir_is_under_the_home_directory(tmp_path: Path) -> None:
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "fusebox"


def test_default_data_dir_follows_xdg_data_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/xdg")
    assert default_data_dir() == Path("/srv/xdg/fusebox")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # invalid per the XDG spec
    assert default_data_dir().parts[-3:] == (".local", "share", "fusebox")


def test_fusebox_data_dir_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/xdg")
    monkeypatch.setenv("FUSEBOX_DATA_DIR", "/srv/fusebox")
    assert default_data_dir() == Path("/srv/fusebox")


@pytest.mark.parametrize("url", [None, ""])
async def test_no_url_opens_the_embedded_store_in_the_data_dir(
    tmp_path: Path, url: str | None
) -> None:
    store = open_store(url, data_dir=tmp_path / "data")
    assert isinstance(store, EmbeddedSpecStore)
    assert Path(store.path) == tmp_path / "data" / DATABASE_FILE_NAME
    await store.ping()  # creates the directory
    assert (tmp_path / "data" / DATABASE_FILE_NAME).is_file()
    await store.close()


def test_no_url_and_no_data_dir_uses_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FUSEBOX_DATA_DIR", str(tmp_path / "env"))
    store = open_store(None)
    assert isinstance(store, EmbeddedSpecStore)
    assert Path(store.path) == tmp_path / "env" / DATABASE_FILE_NAME


def test_sqlite_url_names_an_absolute_path(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/specs.db")
    assert isinstance(store, EmbeddedSpecStore)
    assert Path(store.path) == tmp_path / "specs.db"


async def test_memory_url_opens_a_working_store() -> None:
    store = open_store("memory://")
    [result] = await store.apply([spec_write("cb")])
    assert result.revision == 1
    await store.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380/2"])
def test_redis_urls_open_the_redis_store_without_connecting(url: str) -> None:
    assert isinstance(open_store(url), RedisSpecStore)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://db/specs", "unknown scheme 'postgres'; accepted: memory://, sqlite:///"),
        ("specs.db", "has no scheme; accepted: memory://"),
        ("sqlite://relative/path.db", "needs an absolute file path"),
        ("sqlite:///", "needs an absolute file path"),
        ("memory://extra", "takes nothing after the scheme"),
        ("redis://", "needs a host"),
        ("redis://127.0.0.1:notaport/0", "notaport"),
    ],
)
def test_bad_urls_name_what_is_accepted(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?")) as error:
        open_store(url)
    assert url in str(error.value)


def test_errors_never_show_a_password() -> None:
    with pytest.raises(ValueError, match="notaport") as error:
        open_store("redis://user:s3cret@127.0.0.1:notaport/0")
    assert "s3cret" not in str(error.value)
    assert "user:***@" in str(error.value)
