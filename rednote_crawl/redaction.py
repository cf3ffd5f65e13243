"""Keeping the API token out of every log line.

The token is only ever added to a request at the last hop (``auth.py``), so no
Scrapy component sees it. This filter is the second line of defence: it masks
the token wherever it would still appear in a log record (a ``-s`` override in
"Overridden settings", an exception text from a library, a debug line).
"""

from __future__ import annotations

import logging
import traceback
from urllib.parse import quote


def mask(token: str) -> str:
    """What may be shown of a token: its first 4 characters at most."""
    return f"{token[:4]}…" if len(token) > 8 else "…"


class TokenRedactingFilter(logging.Filter):
    def __init__(self, token: str) -> None:
        super().__init__()
        # The token as written and as it appears URL-encoded in a query string.
        self.forms = sorted({token, quote(token, safe=""), quote(token)}, key=len, reverse=True)
        self.replacement = mask(token)

    def redact(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, self.replacement)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def install(token: str) -> None:
    """Attach the filter to every handler of the root logger (Scrapy's included), once per token."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TokenRedactingFilter) and token in f.forms for f in handler.filters):
            handler.addFilter(TokenRedactingFilter(token))
