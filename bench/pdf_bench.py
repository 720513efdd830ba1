"""Invoice PDF benchmark (issues 4, 20). Prints results; not part of the test run.

    .venv/bin/python bench/pdf_bench.py [--only render,download,zip] [--rounds 10]

Creates a throw-away database portal_bench_pdf_test (inside the portal_bench* guard) and
a media directory, then measures:
1. render: time of a 1-page and a ~20-page invoice, rounds alternating the two; median,
   min and max;
2. download: a cached PDF download through the Django test client, A/B interleaved in
   rounds (order alternating) with the same bytes served as a static file
   (django.views.static.serve) behind the same login and customer lookup
   (member_required), and anonymously, and the PDF view with its earlier ORM lookup
   ("cached PDF, ORM", the baseline); per round the median of --per-round requests,
   then the median of the rounds, min-max, and the ratio per round and of the medians;
3. zip: peak RSS above idle while streaming a ZIP of 100 PDFs (in a fresh child process,
   so earlier rendering does not count), with the PDFs cached and uncached.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.scratch import PREFIX, use_scratch  # noqa: E402

use_scratch("portal_bench_pdf")  # its throw-away database is portal_bench_pdf_test

RUNS = 20
ZIP_COUNT = 100


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    # VmHWM, not getrusage: Linux keeps ru_maxrss across execve, so a child would
    # report its parent's peak.
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _setup(db_name: str | None = None, cache: str = "locmem"):
    import django
    from django.conf import settings

    if cache == "redis":
        redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url,
            }
        }
    if db_name:
        settings.DATABASES["default"]["NAME"] = db_name
    settings.ALLOWED_HOSTS = ["*"]
    settings.ROOT_URLCONF = "bench.pdf_bench_urls"
    django.setup()


def _median_ms(fn, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def zip_child(db_name: str, numbers: list[str], username: str) -> None:
    """Runs in a fresh process: stream the ZIP and report idle and peak RSS."""
    _setup(db_name)
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    client.post("/invoices/download.zip", {"numbers": numbers[:1]})  # warm imports
    idle = _rss_mb()
    start = time.perf_counter()
    response = client.post("/invoices/download.zip", {"numbers": numbers})
    size = sum(len(chunk) for chunk in response.streaming_content)
    elapsed = time.perf_counter() - start
    print(f"{idle:.1f} {_peak_rss_mb():.1f} {size} {elapsed:.2f}")


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}-{fmt.format(max(values))})"
    )


def _interleaved(arms: dict, rounds: int, per_round: int) -> dict[str, list[float]]:
    """Per arm, the median ms of each round; arms run in turn, the order reversed every
    other round, so drift on a shared machine hits them alike."""
    medians: dict[str, list[float]] = {name: [] for name in arms}
    for r in range(rounds):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        for name in order:
            medians[name].append(_median_ms(arms[name], per_round))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="render,download,zip")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=50, help="downloads per arm and round")
    parser.add_argument("--render-rounds", type=int, default=10)
    parser.add_argument(
        "--cache",
        choices=["locmem", "redis"],
        default="locmem",
        help="the cache (sessions, the invoice lookup): the test settings' locmem, or Redis "
        "db 9 as in production",
    )
    args = parser.parse_args()
    media = tempfile.mkdtemp(prefix="pdf-bench-media-")
    os.environ["DJANGO_MEDIA_ROOT"] = media
    _setup(cache=args.cache)
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    # Django would name it test_<name>, outside the portal_bench* guard (bench/scratch.py).
    scratch = f"{connection.settings_dict['NAME']}_test"
    if not scratch.startswith(PREFIX):
        sys.exit(f"refusing to create {scratch!r}: scratch databases start with {PREFIX!r}")
    connection.settings_dict.setdefault("TEST", {})["NAME"] = scratch
    db_name = connection.creation.create_test_db(verbosity=0, keepdb=False)
    assert db_name == scratch, db_name
    try:
        _bench(db_name, settings, Client, media, args)
    finally:
        connection.creation.destroy_test_db(db_name, verbosity=0)


def _bench(db_name, settings, Client, media, args) -> None:
    import importlib

    from django.apps import apps
    from django.core.files.storage import default_storage

    importlib.import_module("billing.invoices.migrations.0002_tax_rates").add_rates(apps, None)
    from billing.invoices.documents import pdf as documents
    from billing.invoices.documents.pdf import (
        _with_lines,
        invoice_pdf_render,
        render_invoice_pdf_bytes,
    )
    from tests.billing.invoices.pdf_helpers import invoice_with_lines, reader
    from tests.factories import CustomerFactory, MembershipFactory, make_invoice

    customer = CustomerFactory(name="Müller GmbH", city="Zürich", country="CH")
    user = MembershipFactory(customer=customer).user

    chosen = set(args.only.split(","))
    one = _with_lines(make_invoice(customer=customer, blocks=3))
    if "render" in chosen:
        twenty = _with_lines(invoice_with_lines(customer, 760))
        pages_one = len(reader(render_invoice_pdf_bytes(one)).pages)
        pages_twenty = len(reader(render_invoice_pdf_bytes(twenty)).pages)
        rendered = _interleaved(
            {
                "one": lambda: render_invoice_pdf_bytes(one),
                "twenty": lambda: render_invoice_pdf_bytes(twenty),
            },
            args.render_rounds,
            1,
        )
        print(
            f"render, {pages_one} page (3 lines): {_spread(rendered['one'], '{:.1f}')} ms, "
            f"median (min-max) of {args.render_rounds}"
        )
        print(
            f"render, {pages_twenty} pages (760 lines): "
            f"{_spread(rendered['twenty'], '{:.0f}')} ms, median (min-max) of "
            f"{args.render_rounds}, alternating with the 1-page render"
        )

    name = invoice_pdf_render(invoice_id=one.pk)
    static_dir = Path(media) / "static-copy"
    static_dir.mkdir()
    (static_dir / "same.pdf").write_bytes(default_storage.open(name, "rb").read())
    settings.BENCH_STATIC_DIR = str(static_dir)
    client = Client()
    client.force_login(user)
    pdf_url = f"/invoices/{one.number}/pdf/"
    assert client.get(pdf_url).status_code == 200
    assert client.get("/bench-static/same.pdf").status_code == 200

    def cached():
        response = client.get(pdf_url)
        assert response.status_code == 200 and response["Content-Type"] == "application/pdf"

    orm_url = f"/bench-pdf-orm/{one.number}/"
    assert client.get(orm_url).content == client.get(pdf_url).content

    def cached_orm():
        response = client.get(orm_url)
        assert response.status_code == 200 and response["Content-Type"] == "application/pdf"

    def static():
        response = client.get("/bench-static/same.pdf")
        b"".join(response.streaming_content)

    def member_static():
        response = client.get("/bench-member-static/same.pdf")
        assert response.status_code == 200
        b"".join(response.streaming_content)

    for _ in range(20):
        cached(), static()
    if os.environ.get("PDF_BENCH_PROFILE"):
        import cProfile
        import pstats

        from django.db import connection, reset_queries

        settings.DEBUG = True
        reset_queries()
        cProfile.runctx("for _ in range(50): cached()", globals(), locals(), "/tmp/pdfbench.prof")
        print(len(connection.queries) / 50, "queries per cached download")
        for q in connection.queries[:8]:
            print("   ", q["time"], q["sql"][:120])
        settings.DEBUG = False
        pstats.Stats("/tmp/pdfbench.prof").sort_stats("cumulative").print_stats(30)
    if "download" in chosen:
        times = _interleaved(
            {
                "cached PDF": cached,
                "cached PDF, ORM": cached_orm,
                "member static": member_static,
                "anonymous static": static,
            },
            args.rounds,
            args.per_round,
        )
        print(
            f"download, {args.rounds} interleaved rounds of {args.per_round} requests per arm "
            "(ms per request: median of round medians, min-max):"
        )
        for arm, values in times.items():
            print(f"  {arm:18s} {_spread(values)} ms")
        for arm, base in (
            ("cached PDF", "member static"),
            ("cached PDF, ORM", "member static"),
            ("cached PDF", "anonymous static"),
            ("cached PDF", "cached PDF, ORM"),
        ):
            pair = [c / b for c, b in zip(times[arm], times[base], strict=True)]
            ratio = statistics.median(times[arm]) / statistics.median(times[base])
            print(f"  {arm} / {base}: {ratio:.2f}x (medians); per round {_spread(pair)}x")
    if "zip" not in chosen:
        return

    from billing.invoices.models import Invoice

    numbers = [make_invoice(customer=customer, blocks=2).number for _ in range(ZIP_COUNT)]
    zipped = list(Invoice.objects.filter(number__in=numbers))
    for label, prerender in (("uncached (rendered on demand)", False), ("cached", True)):
        for invoice in zipped:
            if prerender:
                invoice_pdf_render(invoice_id=invoice.pk)
            elif default_storage.exists(documents.storage_name(invoice)):
                # Finalising rendered them already (the task runs eagerly here).
                default_storage.delete(documents.storage_name(invoice))
        cached_now = sum(default_storage.exists(documents.storage_name(i)) for i in zipped)
        assert cached_now == (len(zipped) if prerender else 0), cached_now
        out = subprocess.run(
            [sys.executable, __file__, "--zip-child", db_name, user.username, *numbers],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "DJANGO_MEDIA_ROOT": media},
        ).stdout.split()
        idle, peak, size, elapsed = float(out[0]), float(out[1]), int(out[2]), float(out[3])
        print(
            f"ZIP of {ZIP_COUNT} PDFs, {label}: {size / 2**20:.1f} MB in {elapsed:.1f} s, "
            f"idle RSS {idle:.0f} MB, peak {peak:.0f} MB, above idle {peak - idle:.0f} MB "
            "(target < 200 MB)"
        )
    del documents


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--zip-child":  # argv: db, user, numbers
        zip_child(sys.argv[2], sys.argv[4:], sys.argv[3])
    else:
        main()
