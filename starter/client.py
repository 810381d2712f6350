"""The Temporal client: where it connects, how securely, and the one data converter.

Worker, API, CLI and the sweep all connect here, configured like the ``temporal`` CLI
(Temporal's environment configuration, ``temporalio.envconfig``):

- ``TEMPORAL_ADDRESS``: the frontend; empty = the embedded dev server of ``make run``
  (127.0.0.1:TEMPORAL_DEV_PORT, plain, no profile read).
- ``TEMPORAL_NAMESPACE``; ``TEMPORAL_API_KEY`` (Temporal Cloud; turns TLS on);
  ``TEMPORAL_TLS=true``, ``TEMPORAL_TLS_SERVER_CA_CERT_PATH|_DATA``,
  ``TEMPORAL_TLS_SERVER_NAME``, ``TEMPORAL_TLS_CLIENT_CERT_PATH|_DATA`` and
  ``TEMPORAL_TLS_CLIENT_KEY_PATH|_DATA`` (mTLS; ``_DATA`` = the PEM itself);
  ``TEMPORAL_GRPC_META_<NAME>``.
- A profile of a ``temporal.toml`` when one is named (``TEMPORAL_PROFILE`` or
  ``TEMPORAL_CONFIG_FILE``); the variables above override it, and ``TEMPORAL_ADDRESS`` must
  be set too (empty means the embedded server, whatever the profile says).

The variables may sit in ``.env`` like every other setting. Payloads are encrypted when
PAYLOAD_KEYS is set (core/codec.py); customer ids are hashed with ID_HASH_KEY (core/ids.py).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from dotenv import dotenv_values
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig
from temporalio.runtime import Runtime

from core.codec import KeyRing, encrypted_converter
from core.ids import DEVELOPMENT_ID_KEY, use_id_key
from settings import Settings


def _temporal_env(settings: Settings) -> dict[str, str]:
    """TEMPORAL_* from .env under the process environment (which wins), as pydantic-settings
    reads every other setting. An empty value is no value, in either place: docker-compose
    passes ``VAR=`` for a variable it has none for, and envconfig would read an empty
    ``TEMPORAL_TLS_*_PATH`` as the current directory, refuse an empty ``_PATH`` next to an
    empty ``_DATA``, and turn TLS on for an empty ``TEMPORAL_API_KEY`` or ``TEMPORAL_TLS``."""
    env_file = settings.model_config.get("env_file")
    from_file: dict[str, str] = {}
    if isinstance(env_file, str) and os.path.exists(env_file):
        from_file = {k: v for k, v in dotenv_values(env_file).items() if v}
    merged = {**from_file, **{k: v for k, v in os.environ.items() if v}}
    return {k: v for k, v in merged.items() if k.startswith("TEMPORAL_")}


def connect_config(settings: Settings) -> ClientConnectConfig:
    """Keyword arguments for ``Client.connect`` (without the converter and runtime)."""
    if settings.embedded_temporal:
        return ClientConnectConfig(
            target_host=settings.temporal_target, namespace=settings.temporal_namespace
        )
    env = _temporal_env(settings)
    named = bool(env.get("TEMPORAL_PROFILE") or env.get("TEMPORAL_CONFIG_FILE"))
    profile = ClientConfigProfile.load(disable_file=not named, override_env_vars=env)
    config = profile.to_client_connect_config()
    config["target_host"] = settings.temporal_target
    # TEMPORAL_NAMESPACE given (settings drop an empty one) wins; else the profile's.
    if "temporal_namespace" in settings.model_fields_set or not config.get("namespace"):
        config["namespace"] = settings.temporal_namespace
    return config


def data_converter(settings: Settings) -> DataConverter:
    """The one converter: pydantic, with payloads encrypted when PAYLOAD_KEYS is set."""
    return encrypted_converter(pydantic_data_converter, KeyRing.parse(settings.payload_keys))


def id_key(settings: Settings) -> bytes:
    """ID_HASH_KEY (settings refuse to run without one outside development and test)."""
    if settings.id_hash_key:
        return hashlib.sha256(settings.id_hash_key.encode()).digest()
    return DEVELOPMENT_ID_KEY


async def connect(
    settings: Settings, runtime: Runtime | None = None, *, lazy: bool = False
) -> Client:
    """``lazy``: connect on the first call, so a process that must run while Temporal is
    down (the HTTP API: it accepts events and its outbox relay delivers them later) starts."""
    # Every process that names runs (worker and sweep, API, CLI) comes through here, so this
    # is where the process learns the key its workflow ids are built with.
    use_id_key(id_key(settings))
    config: dict[str, Any] = dict(connect_config(settings))
    return await Client.connect(
        **config, data_converter=data_converter(settings), runtime=runtime, lazy=lazy
    )
