"""Ready for a real cluster (issue 18, items 1-3): TLS, mTLS and API-key connections from
settings only; encrypted payloads and failures, decoded by the codec server; no email address
or phone number in clear in ids, search attributes, summaries or logs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from core.codec import ENCODING, EncryptionCodec, KeyRing, PayloadKeyError
from core.ids import DEVELOPMENT_ID_KEY, customer_ref, looks_personal, use_id_key, workflow_id
from core.zones import zone_at_local_hour
from observability import JsonFormatter
from settings import Settings
from starter import ops
from starter.client import connect, connect_config, data_converter
from starter.codec_server import create_app
from testkit.data import MUG, abandon_cart
from testkit.history import history_payloads
from testkit.mail import wait_for_mail
from testkit.waiting import eventually
from worker import WORKFLOWS

K1 = base64.b64encode(b"1" * 32).decode()
K2 = base64.b64encode(b"2" * 32).decode()
HISTORIES = {p.stem: p.read_text() for p in (Path(__file__).parent / "histories").glob("*.json")}


@pytest.fixture(autouse=True)
def _no_temporal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the TEMPORAL_* variables it means; none leak in from the shell."""
    for name in list(os.environ):
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _development_id_key() -> Iterator[None]:
    """The key is per process: tests that change it leave the development key behind."""
    use_id_key(DEVELOPMENT_ID_KEY)
    yield
    use_id_key(DEVELOPMENT_ID_KEY)


def _settings(**more: Any) -> Settings:
    return Settings(_env_file=None, environment="test", **more)


# --- connections ------------------------------------------------------------------------


@dataclass
class Pki:
    ca: bytes
    server_cert: Path
    server_key: Path
    client_cert: bytes
    client_key: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    **kind: Any,
) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([kind["usage"]]), critical=False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
        )
        if "dns" in kind:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(kind["dns"])]), critical=False
            )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for ``temporal.test`` and a client certificate."""
    tmp = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert(
        "temporal.test",
        server_key,
        (ca, ca_key),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        dns="temporal.test",
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("worker", client_key, (ca, ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    (tmp / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (tmp / "server.key").write_bytes(_key_pem(server_key))
    return Pki(
        ca=ca.public_bytes(serialization.Encoding.PEM),
        server_cert=tmp / "server.pem",
        server_key=tmp / "server.key",
        client_cert=client.public_bytes(serialization.Encoding.PEM),
        client_key=_key_pem(client_key),
    )


@contextlib.asynccontextmanager
async def tls_frontend(pki: Pki, upstream: str, *, mtls: bool) -> AsyncIterator[str]:
    """A TLS (or mTLS) endpoint in front of the plain dev server: the dev server cannot
    serve TLS itself, a real cluster's frontend does it the same way (HTTP/2 over TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.set_alpn_protocols(["h2"])
    if mtls:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=pki.ca.decode())
    host, port = upstream.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        server.close()


def _target(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


async def test_worker_and_cli_connect_to_an_mtls_cluster_with_settings_only(
    temporal_env: WorkflowEnvironment, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    async with tls_frontend(pki, _target(temporal_env), mtls=True) as address:
        (tmp_path / "client.pem").write_bytes(pki.client_cert)
        monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_DATA", pki.ca.decode())
        monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.test")
        monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(tmp_path / "client.pem"))
        monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_DATA", pki.client_key.decode())
        client = await connect(_settings(temporal_address=address))

        assert [w async for w in client.list_workflows("WorkflowId = 'none'")] == []

        monkeypatch.delenv("TEMPORAL_TLS_CLIENT_CERT_PATH")
        monkeypatch.delenv("TEMPORAL_TLS_CLIENT_KEY_DATA")
        with pytest.raises(RuntimeError):  # no client certificate: the handshake is refused
            await connect(_settings(temporal_address=address))


async def test_a_tls_cluster_is_refused_without_its_ca_and_reached_with_an_api_key(
    temporal_env: WorkflowEnvironment, pki: Pki, monkeypatch: pytest.MonkeyPatch
):
    async with tls_frontend(pki, _target(temporal_env), mtls=False) as address:
        monkeypatch.setenv("TEMPORAL_TLS", "true")
        with pytest.raises(RuntimeError):  # the system roots do not know our CA
            await connect(_settings(temporal_address=address))

        monkeypatch.setenv("TEMPORAL_API_KEY", "cloud-api-key")
        monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_DATA", pki.ca.decode())
        monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.test")
        client = await connect(_settings(temporal_address=address))

        assert client.api_key == "cloud-api-key"
        assert [w async for w in client.list_workflows("WorkflowId = 'none'")] == []


def test_a_temporal_toml_profile_configures_us_like_the_temporal_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "temporal.toml").write_text(
        '[profile.prod]\naddress = "prod.example:7233"\nnamespace = "shop.a1b2c"\n'
        'api_key = "from-profile"\n[profile.prod.tls]\nserver_name = "prod.example"\n'
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "temporal.toml"))
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")

    config = connect_config(_settings(temporal_address="prod.example:7233"))

    assert config["target_host"] == "prod.example:7233"
    assert config["namespace"] == "shop.a1b2c"  # TEMPORAL_NAMESPACE unset: the profile's
    assert config["api_key"] == "from-profile"
    tls = config["tls"]
    assert not isinstance(tls, bool) and tls.domain == "prod.example"
    # An empty TEMPORAL_ADDRESS keeps its meaning: make run's embedded dev server, plain.
    embedded = connect_config(_settings(temporal_dev_port=7999))
    assert embedded == {"target_host": "127.0.0.1:7999", "namespace": "default"}


# --- encryption -----------------------------------------------------------------------


async def test_new_key_encrypts_old_keys_still_decrypt_and_plain_payloads_pass():
    old = EncryptionCodec(KeyRing.parse(f"k1:{K1}"))  # type: ignore[arg-type]
    rotated = EncryptionCodec(KeyRing.parse(f"k2:{K2},k1:{K1}"))  # type: ignore[arg-type]
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"ada@example.com"')

    [sealed_old] = await old.encode([plain])
    [sealed_new] = await rotated.encode([plain])

    assert sealed_old.metadata["encryption-key-id"] == b"k1"
    assert sealed_new.metadata["encryption-key-id"] == b"k2"
    assert b"ada" not in sealed_new.data
    assert await rotated.decode([sealed_old, sealed_new, plain]) == [plain, plain, plain]
    with pytest.raises(PayloadKeyError, match="'k2'"):
        await old.decode([sealed_new])


@pytest.mark.parametrize(
    "text,error",
    [("k1", "want <id>:<base64>"), ("k1:notbase64!", "not base64"), ("k1:" + K1[:8], "32")],
)
def test_malformed_payload_keys_are_refused_with_the_fix(text: str, error: str):
    with pytest.raises(PayloadKeyError, match=error):
        KeyRing.parse(text)


def test_production_refuses_to_run_without_payload_and_id_keys():
    prod: dict[str, Any] = {
        "environment": "production",
        "secret_key": "s" * 20,
        "api_write_key": "w" * 20,
    }
    shop: dict[str, Any] = {
        "shop_url": "https://s.example",
        "shop_name": "S",
        "shop_postal_address": "1 Street",
        "shop_support_email": "help@s.example",
    }
    with pytest.raises(ValueError, match="PAYLOAD_KEYS is not set"):
        Settings(_env_file=None, **prod, **shop)
    ok = Settings(
        _env_file=None,
        **prod,
        **shop,
        payload_keys=f"k1:{K1}",
        id_hash_key="i" * 32,
    )
    assert ok.payload_keys


async def test_failure_messages_and_details_are_encrypted():
    converter = data_converter(_settings(payload_keys=f"k1:{K1}"))
    failure = Failure()
    error = ApplicationError("relay said: 550 ada@example.com unknown", "ada@example.com")

    await converter.encode_failure(error, failure)

    assert b"ada@example.com" not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert "ada@example.com" in str(decoded)


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_unencrypted_recorded_histories_replay_with_the_encrypting_converter(name: str):
    history = WorkflowHistory.from_json(name, HISTORIES[name])
    replayer = Replayer(
        workflows=list(WORKFLOWS), data_converter=data_converter(_settings(payload_keys=f"k1:{K1}"))
    )

    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None, result.replay_failure


async def test_history_on_the_server_is_encrypted_and_the_codec_server_decodes_it(
    temporal_env: WorkflowEnvironment, make_stack: Callable[..., Any]
):
    settings = _settings(
        temporal_address=_target(temporal_env),
        payload_keys=f"k2:{K2},k1:{K1}",
        codec_server_token="t" * 24,
    )
    client = await connect(settings)
    stack = await make_stack(client=client)
    cid = f"ada.{os.urandom(4).hex()}@example.com"  # a shop whose user ids are emails
    await stack.journeys.customer_upserted(
        {"customer_id": cid, "email": cid, "timezone": zone_at_local_hour(11)}
    )
    handle = await abandon_cart(stack, cid, MUG)
    await stack.fast_forward(handle, timedelta(hours=2))
    assert len(await wait_for_mail(stack.catcher, cid, 1)) == 1

    plain = await Client.connect(_target(temporal_env))  # sees what the server stores
    history = await plain.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace="default", execution=WorkflowExecution(workflow_id=handle.id)
        )
    )
    raw = history.SerializeToString()
    payloads = history_payloads(json_format.MessageToDict(history))
    clear = [p for p in payloads if p["metadata"]["encoding"] != _b64(ENCODING)]
    assert payloads and not clear, clear
    assert cid.encode() not in raw and b"checkout" not in raw
    # Ids, search attributes and summary name the customer by ref; the CLI finds the run.
    ref = customer_ref(cid)
    assert handle.id == f"cart-recovery:{ref}" and "@" not in handle.id
    described = await handle.describe()
    assert await described.static_summary() == f"Cart recovery for {ref}"
    runs = await eventually(lambda: ops.customer_runs(client, cid), lambda r: bool(r))
    assert [r.workflow_id for r in runs] == [handle.id]

    app = create_app(settings)
    body = json.dumps({"payloads": payloads[:1]})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec"
    ) as http:
        refused = await http.post("/decode", content=body, headers=_auth("wrong"))
        decoded = await http.post("/decode", content=body, headers=_auth("t" * 24))
        preflight = await http.options(
            "/decode",
            headers={
                "Origin": "http://localhost:8233",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
            },
        )
    assert refused.status_code == 401
    assert decoded.status_code == 200
    [inp] = json_format.Parse(decoded.text, Payloads()).payloads
    assert inp.metadata["encoding"] == b"json/plain" and cid.encode() in inp.data
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:8233"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


# --- ids and logs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "customer_id,personal",
    [
        ("c-42", False),
        ("42", False),
        ("cust_9f8e7d6c", False),
        ("ada@example.com", True),
        ("+49 170 1234567", True),
        ("(555) 123-4567", True),
        ("017012345678", True),
    ],
)
def test_ids_that_look_like_an_address_or_phone_number_are_hashed(customer_id, personal):
    assert looks_personal(customer_id) is personal
    ref = customer_ref(customer_id)
    assert (ref != customer_id) is personal
    assert workflow_id("cart_recovery", customer_id) == f"cart-recovery:{ref}"
    if personal:
        assert ref.startswith("h-") and len(ref) == 26
        use_id_key(b"another key")
        assert customer_ref(customer_id) != ref  # the key decides; it is a secret


def test_json_logs_carry_ids_not_addresses():
    record = logging.LogRecord(
        "send", logging.INFO, __file__, 1, "sent %s to %s", ("k", "ada@example.com"), None
    )
    record.customer_id = "ada@example.com"

    line = json.loads(JsonFormatter().format(record))

    assert "ada@example.com" not in json.dumps(line)
    assert line["customer_id"] == customer_ref("ada@example.com")
    assert line["message"] == f"sent k to {customer_ref('ada@example.com')}"
