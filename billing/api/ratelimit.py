"""Fixed-window rate limit per API token, counted in the cache (Redis in production)."""

import logging
import time

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 60


def check_rate(token_id: int) -> int | None:
    """None when the request may go on, else the seconds until the window resets.

    If the cache is down the request goes on: refusing every API call because Redis
    is unavailable would turn a cache outage into a payment outage.
    """
    limit = settings.API_RATE_LIMIT_PER_MINUTE
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = f"api-rate:{token_id}:{window}"
    try:
        cache.add(key, 0, timeout=WINDOW_SECONDS * 2)
        count = cache.incr(key)
    except Exception:
        logger.exception("API rate limit unavailable; letting the request through")
        return None
    if count > limit:
        return max(1, int((window + 1) * WINDOW_SECONDS - now))
    return None
