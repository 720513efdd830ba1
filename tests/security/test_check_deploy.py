from tests.security.prod import production_settings, run


def test_check_deploy_is_clean_with_production_settings():
    result = run("manage.py", "check", "--deploy", "--fail-level", "DEBUG")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output
    assert "WARNING" not in output.upper(), output


def test_production_cookies_and_transport():
    s = production_settings(
        "DEBUG",
        "SESSION_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "SESSION_COOKIE_SAMESITE",
        "CSRF_COOKIE_SECURE",
        "CSRF_COOKIE_HTTPONLY",
        "CSRF_COOKIE_SAMESITE",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_PROXY_SSL_HEADER",
        "X_FRAME_OPTIONS",
        "SECURE_CONTENT_TYPE_NOSNIFF",
        "SECURE_REFERRER_POLICY",
        "MIDDLEWARE",
    )
    assert s["DEBUG"] is False
    assert s["SESSION_COOKIE_SECURE"] and s["SESSION_COOKIE_HTTPONLY"]
    assert s["CSRF_COOKIE_SECURE"] and s["CSRF_COOKIE_HTTPONLY"]
    assert s["SESSION_COOKIE_SAMESITE"] in ("Lax", "Strict")
    assert s["CSRF_COOKIE_SAMESITE"] in ("Lax", "Strict")
    assert s["SECURE_SSL_REDIRECT"] is True
    assert s["SECURE_HSTS_SECONDS"] >= 31536000
    assert s["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert s["X_FRAME_OPTIONS"] == "DENY"
    assert s["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert s["SECURE_REFERRER_POLICY"] == "same-origin"
    assert "config.middleware.SecurityHeadersMiddleware" in s["MIDDLEWARE"]


def test_production_refuses_to_start_without_a_secret_key():
    from tests.security import prod

    saved = prod.PRODUCTION_ENV.pop("DJANGO_SECRET_KEY")
    try:
        result = run("manage.py", "check")
    finally:
        prod.PRODUCTION_ENV["DJANGO_SECRET_KEY"] = saved
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_check_deploy_warns_about_the_demo_seller_vat_id_and_a_bad_iban():
    result = run(
        "manage.py",
        "check",
        "--deploy",
        env={"SELLER_VAT_ID": "DE811111111", "SELLER_IBAN": "DE89370400440532013001"},
    )
    output = result.stdout + result.stderr
    assert "portal.W002" in output and "portal.W003" in output, output
    assert (
        "portal.W002"
        in run("manage.py", "check", "--deploy", env={"SELLER_VAT_ID": "DE811111112"}).stderr
    )
