"""Load run: gunicorn (production settings, 4 workers) on loopback, driven by wrk.

    .venv/bin/python bench/load_run.py [--duration 20] [--connections 4] [--workers 4]

Needs `wrk` (Debian: `apt-get install -y wrk`). Recreates the scratch database
`portal_bench_load`, seeds it with `seed_demo`, logs the demo owner in and creates a
read-only API token, starts gunicorn on a free port of 127.0.0.1, runs wrk against
`/invoices/` (session cookie; session and CSRF cookies as a browser sends them) and
`GET /api/invoices/` (bearer token) for a bounded
time each, prints requests/s, p50/p99 latency and errors, then stops gunicorn.

Production settings (config.settings.production) with DJANGO_SECURE_SSL_REDIRECT=false:
plain HTTP on loopback, the Secure session cookie is sent by wrk in its own header.
The API rate limit is raised for the run, or it would answer 429 after 100 requests.
"""

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
DB_NAME = "portal_bench_load"

SETUP = """
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from billing.api.tokens import token_create
from contracts.models import Membership

user = get_user_model().objects.get(username="demo@example.com")
client = Client()
assert client.login(username="demo@example.com", password="demo-password")
membership = Membership.objects.filter(user=user, role="owner").first()
_, raw = token_create(
    membership=membership, name="load run", scopes=["read:invoices"], expires_at=None,
    actor="load run",
)
print("SESSION=" + client.cookies["sessionid"].value)
print("TOKEN=" + raw)
"""


def environment() -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY="bench-only-" + "x" * 50,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        REDIS_URL="redis://127.0.0.1:6379/9",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/9",
        DJANGO_SECURE_SSL_REDIRECT="false",
        SANDBOX_ALLOWED="true",
        API_RATE_LIMIT_PER_MINUTE="100000000",
        LOG_LEVEL="WARNING",
    )
    return env


def recreate_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}")
        try:
            get(base + "/accounts/login/", {})
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer within 30 s")


def parse_wrk(output: str) -> dict:
    def find(pattern: str) -> str:
        match = re.search(pattern, output)
        return match.group(1) if match else ""

    errors = find(r"Socket errors: (.*)")
    return {
        "requests": find(r"(\d+) requests in"),
        "rps": find(r"Requests/sec:\s+([\d.]+)"),
        "p50": find(r"\s50%\s+(\S+)"),
        "p99": find(r"\s99%\s+(\S+)"),
        "non2xx": find(r"Non-2xx or 3xx responses: (\d+)") or "0",
        "socket_errors": errors or "none",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=20, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if not wrk:
        print("wrk is not installed; on Debian: apt-get install -y wrk. Load run skipped.")
        sys.exit(2)
    gunicorn = Path(PY).with_name("gunicorn")
    env = environment()
    recreate_database()
    run = dict(cwd=ROOT, env=env, check=True)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], **run)
    subprocess.run([PY, "manage.py", "seed_demo"], **run, stdout=subprocess.DEVNULL)
    out = subprocess.run([PY, "-c", SETUP], **run, capture_output=True, text=True).stdout
    values = dict(line.split("=", 1) for line in out.split() if "=" in line)
    # A browser also holds a CSRF cookie (logging in through the form sets it); with it,
    # a repeat view of the list is served from the page cache (billing.page_cache).
    csrf_secret = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    scenarios = {
        "/invoices/ (session)": ("/invoices/", f"Cookie: sessionid={values['SESSION']}"),
        "/invoices/ (session + CSRF cookie)": (
            "/invoices/",
            f"Cookie: sessionid={values['SESSION']}; csrftoken={csrf_secret}",
        ),
        "GET /api/invoices/ (token)": (
            "/api/invoices/",
            f"Authorization: Bearer {values['TOKEN']}",
        ),
    }

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(gunicorn), "config.wsgi", "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
         "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    print(f"gunicorn pid {proc.pid}, {args.workers} workers on {base}", flush=True)
    results = {}
    try:
        wait_ready(base, proc)
        opener = urllib.request.build_opener(NoRedirect)
        for name, (path, header) in scenarios.items():
            key, value = header.split(": ", 1)
            try:
                status = opener.open(
                    urllib.request.Request(base + path, headers={key: value}), timeout=10
                ).status
            except urllib.error.HTTPError as exc:
                status = exc.code
            if status != 200:
                raise SystemExit(f"{path} answered {status} before the load run; not measuring")
            cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
                   "--latency", "--timeout", "10s", "-H", header, base + path]  # fmt: skip
            wrk_out = subprocess.run(
                cmd, capture_output=True, text=True, timeout=args.duration + 30
            ).stdout
            results[name] = parse_wrk(wrk_out)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print(f"gunicorn {proc.pid} stopped", flush=True)

    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"gunicorn {args.workers} sync workers, production settings"
    )
    print(
        f"{'scenario':36s} {'requests':>9s} {'req/s':>9s} {'p50':>9s} {'p99':>9s}  non-2xx  errors"
    )
    failed = False
    for name, r in results.items():
        print(
            f"{name:36s} {r['requests']:>9s} {r['rps']:>9s} {r['p50']:>9s} {r['p99']:>9s}  "
            f"{r['non2xx']:>7s}  {r['socket_errors']}"
        )
        failed |= r["non2xx"] != "0" or r["socket_errors"] != "none"
    if failed:
        print("FAILED: non-2xx responses or socket errors during the load run")
        sys.exit(1)


if __name__ == "__main__":
    main()
