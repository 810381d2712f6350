"""An empty Temporal variable is an unset one (issue 18 item 1). docker-compose passes
``VAR=`` for a variable listed without a value, and so does a ``.env`` copied from an example
with the optional lines left blank. Read as values by ``temporalio.envconfig``, an empty
``TEMPORAL_TLS_*_PATH`` is the current directory (IsADirectoryError at start), and an empty
``TEMPORAL_API_KEY``, ``TEMPORAL_TLS`` or ``TEMPORAL_TLS_SERVER_NAME`` turns TLS on for a
plain cluster. These tests set real environment variables and go through the real path
(``starter.client`` -> ``temporalio.envconfig`` -> ``Client.connect``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from settings import Settings
from starter.client import connect, connect_config

# Every variable of Temporal's environment configuration that an operator may leave blank.
BLANK = [
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
    "TEMPORAL_CODEC_ENDPOINT",
]


def _settings(**more: Any) -> Settings:
    return Settings(_env_file=None, environment="test", **more)


@pytest.fixture
def blank_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    for name in BLANK:
        monkeypatch.setenv(name, "")
    return monkeypatch


async def test_blank_tls_and_api_key_variables_reach_a_plain_cluster_plainly(
    temporal_env: WorkflowEnvironment, blank_env: pytest.MonkeyPatch
) -> None:
    address = temporal_env.client.service_client.config.target_host
    blank_env.setenv("TEMPORAL_ADDRESS", address)

    config = connect_config(_settings())
    client = await connect(_settings())

    assert "tls" not in config and "api_key" not in config, config
    assert config["namespace"] == "default"
    assert client.namespace == "default"
    assert [w async for w in client.list_workflows("WorkflowId = 'none'")] == []


def test_a_blank_variable_leaves_the_env_file_and_the_profile_their_values(
    blank_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "TEMPORAL_TLS_SERVER_NAME=temporal.test\nTEMPORAL_API_KEY=from-env-file\n"
    )
    (tmp_path / "temporal.toml").write_text('[profile.prod]\nnamespace = "shop.a1b2c"\n')
    blank_env.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "temporal.toml"))
    blank_env.setenv("TEMPORAL_PROFILE", "prod")
    blank_env.setenv("TEMPORAL_ADDRESS", "prod.example:7233")

    settings = Settings(environment="test")  # reads this directory's .env, as a process would
    config = connect_config(settings)

    assert settings.temporal_namespace == "default"  # blank: the default, not ""
    assert config["namespace"] == "shop.a1b2c"  # the profile's, not the blank variable's
    assert config["api_key"] == "from-env-file"  # the blank process variable hides nothing
    tls = config["tls"]
    assert not isinstance(tls, bool) and tls.domain == "temporal.test"
    assert tls.client_cert is None and tls.server_root_ca_cert is None
