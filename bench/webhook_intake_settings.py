"""Production settings with the benchmark's URLs (a trivial POST next to /stripe/)."""

from config.settings.production import *  # noqa: F403

ROOT_URLCONF = "bench.webhook_intake_urls"
