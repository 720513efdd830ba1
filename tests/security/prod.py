"""Run Django with config.settings.production in a subprocess, with safe test values."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    # Long and random-looking, as check --deploy demands; used for nothing else.
    "DJANGO_SECRET_KEY": "test-only-9fQ2vX7LmP4kR8sT1wY6zB3nD5hJ0cV2gA7eU4iO9pK1xM6rW8",
    "DJANGO_ALLOWED_HOSTS": "portal.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15",
    "SITE_URL": "https://portal.example.com",
    "PAYMENT_PROVIDER": "stripe",
    "STRIPE_SECRET_KEY": "sk_live_test-only-not-a-key",
    "STRIPE_WEBHOOK_SECRET": "whsec_test-only-not-a-secret",
    "TRUSTED_PROXY_HOPS": "1",
    # A number with a valid checksum, as production must set (portal.W002).
    "SELLER_VAT_ID": "DE811111113",
}


def production_env(**overrides: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    return {**keep, **PRODUCTION_ENV, **overrides}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=production_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def production_settings(*names: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}))"
    )
    result = run("-c", code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
