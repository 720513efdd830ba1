"""Development and `make demo`: SQLite, console e-mail, sandbox payments."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
