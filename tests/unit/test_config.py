from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.config import Settings


def test_nested_settings_from_env() -> None:
    s = Settings.from_env(
        {
            "DEEPLENS_JWT__ISSUER": "me",
            "DEEPLENS_STORAGE__BACKEND": "s3",
            "DEEPLENS_BCRYPT_ROUNDS": "5",
            "OTHER": "x",
        }
    )
    assert s.jwt.issuer == "me" and s.storage.backend == "s3" and s.bcrypt_rounds == 5


def test_production_refuses_placeholders() -> None:
    with pytest.raises(ValidationError) as exc:
        Settings.from_env({"DEEPLENS_ENV": "production", "DEEPLENS_STORAGE__BACKEND": "s3"})
    text = str(exc.value)
    assert "DATABASE_URL" in text and "SECRET_KEY is a placeholder" in text
    assert "JWT__PRIVATE_KEY" in text


def test_production_accepts_real_settings() -> None:
    s = Settings.from_env(
        {
            "DEEPLENS_ENV": "production",
            "DEEPLENS_DATABASE_URL": "postgresql://x",
            "DEEPLENS_JWT__PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----",
        }
    )
    assert s.env == "production"


def test_secrets_do_not_print() -> None:
    s = Settings.from_env({"DEEPLENS_STORAGE__SECRET_KEY": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(s) and "s3cr3t-value" not in str(s.model_dump())


def test_api_key_parsing_accepts_underscores_in_the_secret() -> None:
    from shared.api_keys import split_key

    assert split_key("dl_0a1b2c3d_abc_def-ghi_jklmnopqrstuvwxyz") == "dl_0a1b2c3d"
    for bad in ("dl_short_x", "xx_0a1b2c3d_abcdefghijklmnopqrstuvwxyz", "dl_0a1b2c3d"):
        with pytest.raises(Exception):  # noqa: B017,PT011 - Unauthorized
            split_key(bad)


def test_production_refuses_the_repository_templates() -> None:
    """The values in infra/knative/secrets.example.yaml and config.yaml never start a pod."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "infra" / "knative"
    secrets = {
        d["metadata"]["name"]: d["stringData"]
        for d in yaml.safe_load_all((root / "secrets.example.yaml").read_text())
    }
    config = list(yaml.safe_load_all((root / "config.yaml").read_text()))
    public = next(d for d in config if d["metadata"]["name"] == "deeplens-jwt")["data"]
    with pytest.raises(ValidationError) as exc:
        Settings.from_env(
            {
                "DEEPLENS_ENV": "production",
                "DEEPLENS_STORAGE__BACKEND": "s3",
                "DEEPLENS_DATABASE_URL": secrets["deeplens-secrets"]["database-url"],
                "DEEPLENS_STORAGE__SECRET_KEY": secrets["deeplens-secrets"]["s3-secret-key"],
                "DEEPLENS_JWT__PRIVATE_KEY": secrets["deeplens-jwt-signing"]["private.pem"],
                "DEEPLENS_JWT__PUBLIC_KEY": public["public.pem"],
                "DEEPLENS_METRICS_TOKEN": secrets["deeplens-secrets"]["metrics-token"],
            }
        )
    text = str(exc.value)
    for name in ("DATABASE_URL", "SECRET_KEY", "PRIVATE_KEY", "PUBLIC_KEY", "METRICS_TOKEN"):
        assert name in text


def test_trusted_proxies_must_parse() -> None:
    ok = Settings.from_env({"DEEPLENS_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"})
    assert ok.trusted_proxies.startswith("10.0.0.0/8")
    with pytest.raises(ValueError):
        Settings.from_env({"DEEPLENS_TRUSTED_PROXIES": "not-an-address"})


def test_database_url_is_a_postgresql_url_and_refusals_hide_it() -> None:
    for url in (
        "postgresql://u:pw@127.0.0.1:5432/db",
        "postgres://h/db",
        "postgresql://postgres:@/postgres?host=/tmp/socket",  # the embedded server's form
    ):
        assert Settings.from_env({"DEEPLENS_DATABASE_URL": url}).database_url == url
    assert Settings.from_env({}).database_url is None  # unset: embedded PostgreSQL
    for bad in ("mysql://u:s3cr3t@h/db", "postgresql://u:s3cr3t@h:port/db", "s3cr3t"):
        with pytest.raises(ValidationError) as exc:
            Settings.from_env({"DEEPLENS_DATABASE_URL": bad})
        assert "database_url" in str(exc.value) and "s3cr3t" not in str(exc.value)


def test_platform_variables_are_settings() -> None:
    s = Settings.from_env(
        {
            "FUNCTION_TARGET": "auth",
            "K_SINK": "http://broker-ingress/default",
            "DEEPLENS_BROKER_AUTOSTART": "0",
            "DEEPLENS_PROCESS": "auth-1",
            "DEEPLENS_SCALE": "extract=2",
        }
    )
    assert s.function_target == "auth" and s.k_sink == "http://broker-ingress/default"
    assert s.broker_autostart is False and s.process == "auth-1" and s.scale == "extract=2"
    assert Settings.from_env({"FUNCTION_TARGET": "x"}).broker_autostart is True


def test_broker_url_falls_back_to_k_sink() -> None:
    from events.publisher import HttpPublisher, build_publisher

    s = Settings.from_env({"DEEPLENS_BROKER": "http", "K_SINK": "http://sink.example/"})
    publisher = build_publisher(s, None)  # type: ignore[arg-type]  # http needs no database
    assert isinstance(publisher, HttpPublisher) and publisher.url == "http://sink.example/"
    publisher.client.close()
