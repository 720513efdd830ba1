"""Error reports (the admins' e-mails, DEBUG pages) without the passwords in URLs.

Django's SafeExceptionReporterFilter masks settings and request variables whose *name*
looks secret (PASSWORD, KEY, TOKEN, ...). A URL such as
redis://:s3cret@redis:6379/0 is named LOCATION, CELERY_BROKER_URL or REDIS_URL, so it
was mailed in full. This filter also masks the credentials inside any URL-shaped value,
keeping scheme, user, host and path so the report still says where it was connecting.
"""

import re

from django.views.debug import SafeExceptionReporterFilter

# scheme://[user]:password@  — the password is everything up to the last "@" of the
# authority (passwords may contain "@" or ":" when not percent-encoded).
URL_CREDENTIALS = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^/\s]*@")


def hide_url_credentials(text: str) -> str:
    return URL_CREDENTIALS.sub(
        lambda m: f"{m['head']}{SafeExceptionReporterFilter.cleansed_substitute}@", text
    )


class CredentialHidingReporterFilter(SafeExceptionReporterFilter):
    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        return hide_url_credentials(cleansed) if isinstance(cleansed, str) else cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        return [
            (name, hide_url_credentials(value) if isinstance(value, str) else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]
