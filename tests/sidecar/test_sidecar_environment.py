"""`fusebox run` takes the FUSEBOX_* variables as the defaults of its flags, read as
``Agent.from_env`` reads them (docs/deploy.md). The sidecar syncing over TLS with
only the environment is in tests/security/test_environment_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusebox.agent.environment import EnvironmentConfigError
from fusebox.controlplane.cli import main
from fusebox.controlplane.sidecar import SidecarOptions

COMMAND = ("python", "app.py")
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def options(env: dict[str, str], **flags: str | None) -> SidecarOptions:
    return SidecarOptions.from_flags(command=COMMAND, environ=env, **flags)  # type: ignore[arg-type]


def test_the_environment_gives_every_default(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("fbx_agent\n")
    ca = tmp_path / "ca.crt"
    ca.write_text(PEM)
    got = options({
        "FUSEBOX_APP_ID": "checkout", "FUSEBOX_NAMESPACE": "shop",
        "FUSEBOX_INSTANCE_ID": "checkout-5f7c9-abcde", "FUSEBOX_TOKEN_FILE": str(token),
        "FUSEBOX_TLS_CA": str(ca), "FUSEBOX_TLS_CERT": str(ca), "FUSEBOX_TLS_KEY": str(ca),
        "FUSEBOX_INITIAL_FETCH_TIMEOUT": "0.5",
    })
    assert (got.app_id, got.namespace, got.instance_id) == ("checkout", "shop",
                                                            "checkout-5f7c9-abcde")
    assert (got.token, got.tls_ca, got.tls_cert, got.tls_key) == ("fbx_agent", str(ca), str(ca),
                                                                  str(ca))
    assert got.initial_fetch_timeout == 0.5
    assert got.command == COMMAND


def test_without_variables_the_defaults_are_the_agents() -> None:
    got = options({}, app_id="checkout")
    assert (got.namespace, got.instance_id, got.token, got.tls_ca) == ("default", None, None,
                                                                       None)
    assert got.initial_fetch_timeout == 3.0


def test_flags_win_and_the_variables_they_replace_are_not_read(tmp_path: Path) -> None:
    got = options(
        {"FUSEBOX_APP_ID": "inventory", "FUSEBOX_NAMESPACE": "other",
         "FUSEBOX_TOKEN_FILE": str(tmp_path / "missing"),
         "FUSEBOX_TLS_CA": str(tmp_path / "missing.pem")},
        app_id="checkout", namespace="shop", token="fbx_flag", tls_ca=str(tmp_path / "flag.pem"),
    )
    assert (got.app_id, got.namespace, got.token, got.tls_ca) == (
        "checkout", "shop", "fbx_flag", str(tmp_path / "flag.pem"))


def test_a_bad_variable_is_the_agents_error() -> None:
    with pytest.raises(EnvironmentConfigError) as caught:
        options({"FUSEBOX_APP_ID": "checkout", "FUSEBOX_INITIAL_FETCH_TIMEOUT": "soon"})
    assert caught.value.variable == "FUSEBOX_INITIAL_FETCH_TIMEOUT"


def test_fusebox_run_without_an_app_id_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("FUSEBOX_APP_ID", raising=False)
    assert main(["run", "--", "true"]) == 2
    assert "give --app-id, or set FUSEBOX_APP_ID" in capsys.readouterr().err


def test_fusebox_run_names_a_bad_variable_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    # No --server and no $FUSEBOX_SERVER would start the local control plane: the
    # environment is checked first, so nothing starts.
    monkeypatch.delenv("FUSEBOX_SERVER", raising=False)
    monkeypatch.setenv("FUSEBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FUSEBOX_APP_ID", "checkout")
    monkeypatch.setenv("FUSEBOX_TOKEN_FILE", str(tmp_path / "missing-token"))
    assert main(["run", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert f"FUSEBOX_TOKEN_FILE={str(tmp_path / 'missing-token')!r}: cannot read the file" in err
    assert not (tmp_path / "data").exists()


def test_a_client_certificate_flag_needs_its_key() -> None:
    with pytest.raises(ValueError, match="--tls-cert and --tls-key go together"):
        options({}, app_id="checkout", tls_cert="c.pem")
