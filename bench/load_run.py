"""Load run: gunicorn (production settings, 4 workers) on loopback, driven by wrk.

    .venv/bin/python bench/load_run.py [--duration 10] [--rounds 3] [--connections 4]
        [--workers 4] [--only list,list-csrf,api]

Each round runs every scenario and the baseline, a trivial GET (one query through the same
stack, bench/webhook_intake_urls.py), in an order that alternates (forward, then backward);
it prints every round, then per scenario the median and min-max req/s and p50, and the
ratio to the trivial GET per round and of the medians. Zero non-2xx and zero socket errors
are required.

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
import statistics
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.scratch import load_average  # noqa: E402

PY = sys.executable
DB_NAME = "portal_bench_load"
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/7")

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
        DJANGO_SETTINGS_MODULE="bench.webhook_intake_settings",
        DJANGO_SECRET_KEY="bench-only-" + "x" * 50,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        REDIS_URL=BROKER,
        CELERY_BROKER_URL=BROKER,
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


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}")
        try:
            get(base + "/accounts/login/", {})
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer within {timeout:.0f} s")


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
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="list,list-csrf,api", help="scenarios besides trivial")
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
    every = {
        "trivial": ("GET /bench/trivial-get/", "/bench/trivial-get/", "X-Bench: 1"),
        "list": ("/invoices/ (session)", "/invoices/", f"Cookie: sessionid={values['SESSION']}"),
        "list-csrf": (
            "/invoices/ (session + CSRF cookie)",
            "/invoices/",
            f"Cookie: sessionid={values['SESSION']}; csrftoken={csrf_secret}",
        ),
        "api": (
            "GET /api/invoices/ (token)",
            "/api/invoices/",
            f"Authorization: Bearer {values['TOKEN']}",
        ),
    }
    chosen = ["trivial", *[k for k in args.only.split(",") if k in every and k != "trivial"]]
    scenarios = {every[k][0]: every[k][1:] for k in chosen}

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(gunicorn), "config.wsgi", "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
         "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    print(f"gunicorn pid {proc.pid}, {args.workers} workers on {base}", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in scenarios}
    try:
        wait_ready(base, proc)
        opener = urllib.request.build_opener(NoRedirect)
        for path, header in scenarios.values():
            key, value = header.split(": ", 1)
            try:
                status = opener.open(
                    urllib.request.Request(base + path, headers={key: value}), timeout=10
                ).status
            except urllib.error.HTTPError as exc:
                status = exc.code
            if status != 200:
                raise SystemExit(f"{path} answered {status} before the load run; not measuring")
        for r in range(args.rounds):
            order = list(scenarios) if r % 2 == 0 else list(reversed(scenarios))
            for name in order:
                path, header = scenarios[name]
                cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}",
                       f"-d{args.duration}s", "--latency", "--timeout", "10s", "-H", header,
                       base + path]  # fmt: skip
                wrk_out = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=args.duration + 30
                ).stdout
                row = parse_wrk(wrk_out)
                results[name].append(row)
                print(f"round {r + 1} {name:36s} {row['rps']:>9s} req/s p50 {row['p50']}",
                      flush=True)  # fmt: skip
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print(f"gunicorn {proc.pid} stopped", flush=True)

    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} "
        f"interleaved rounds, gunicorn {args.workers} sync workers, production settings; "
        f"load average {load_average()}"
    )
    print(f"{'scenario':36s} {'req/s median (min-max)':>24s} {'trivial / it':>22s}  errors")
    trivial = [float(r["rps"]) for r in results["GET /bench/trivial-get/"]]
    failed = False
    for name, rows in results.items():
        rates = [float(r["rps"]) for r in rows]
        per_round = [t / x for t, x in zip(trivial, rates, strict=True)]
        non2xx = sum(int(r["non2xx"]) for r in rows)
        errors = sorted({r["socket_errors"] for r in rows} - {"none"})
        print(
            f"{name:36s} {statistics.median(rates):>9,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
            f" {statistics.median(trivial) / statistics.median(rates):>6.2f}x "
            f"({min(per_round):.2f}-{max(per_round):.2f}x)  {non2xx} non-2xx, "
            f"{', '.join(errors) or 'no socket errors'}"
        )
        failed |= non2xx > 0 or bool(errors)
    if failed:
        print("FAILED: non-2xx responses or socket errors during the load run")
        sys.exit(1)


if __name__ == "__main__":
    main()
