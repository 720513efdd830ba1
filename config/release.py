"""A fingerprint of the deployed code, for the keys of cached HTML.

Cached pages outlive a deploy: the cache (Redis) is shared by the old and the new
processes of a rolling restart. Keys that include this fingerprint change with any
template or Python file of the project, so a new release never serves HTML rendered by
the old one, and old processes keep to their own.
"""

import functools
import hashlib

from django.conf import settings

_FOLDERS = ("templates", "billing", "contracts", "config")
_SUFFIXES = (".py", ".html", ".txt")


@functools.cache
def code_fingerprint() -> str:
    digest = hashlib.blake2b(digest_size=8)
    for folder in _FOLDERS:
        for path in sorted((settings.BASE_DIR / folder).rglob("*")):
            if path.suffix in _SUFFIXES and path.is_file():
                digest.update(str(path.relative_to(settings.BASE_DIR)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()
