"""Keeping the API token out of every log line.

The token is only ever added to a request at the last hop (``auth.py``), so no
Scrapy component sees it. This is the second line of defence: a log record
factory that masks the token in every record the process creates (a library's
warning that quotes the signed URL, an exception text, a debug line). A record
factory, not a handler filter, because Scrapy replaces its root handler after
the add-ons have run.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any
from urllib.parse import quote

_forms: list[str] = []  # every token of this process, raw and URL-encoded, longest first
_masks: dict[str, str] = {}
_pattern: re.Pattern[str] | None = None
_factory_before: Any = None  # the log record factory install() wrapped, for reset()
# A token as long as a real one is masked wherever it stands. One as short as a word (the
# sandbox takes "any") only where it is a token, after "token=": "note_time any" stays as it is.
_WORD = r"[A-Za-z0-9_\-]"
SHORT_TOKEN = 16  # characters: real tokens are longer (a shorter one is a placeholder or a typo)


def mask(token: str) -> str:
    """What may be shown of a token: its first 4 characters at most."""
    return f"{token[:4]}…" if len(token) > 8 else "…"


def redact(text: str) -> str:
    if _pattern is None or not any(form in text for form in _forms):
        return text
    return _pattern.sub(lambda match: _masks[match.group(0)], text)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed log call: leave it to logging's own error report
        return
    redacted = redact(message)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _may_be_written(level: int) -> bool:
    """Whether a handler of the root logger takes records of this level. Scrapy logs every item at
    DEBUG; formatting each one to redact it, only for the INFO handler to drop it, cost more CPU
    than parsing the note."""
    handlers = logging.root.handlers
    return not handlers or level >= min(handler.level for handler in handlers)


def install(token: str) -> None:
    """Mask ``token`` in every log record from now on (idempotent)."""
    global _pattern, _factory_before
    if not token:
        return
    if not _masks:
        previous = _factory_before = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _forms and _may_be_written(record.levelno):
                _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
    for form in (token, quote(token, safe=""), quote(token)):
        _masks.setdefault(form, mask(token))
    _forms[:] = sorted(_masks, key=len, reverse=True)
    long_forms = [form for form in _forms if len(form) >= SHORT_TOKEN]
    short_forms = [form for form in _forms if len(form) < SHORT_TOKEN]
    # A token as short as an ordinary word ("any", the sandbox's) is masked where it is a token: after "token=".
    patterns = ["|".join(map(re.escape, long_forms))] if long_forms else []  # wherever it stands
    patterns += [rf"(?<=token=)(?:{'|'.join(map(re.escape, short_forms))})(?!{_WORD})"] if short_forms else []
    _pattern = re.compile("|".join(patterns))


def reset() -> None:
    """Forget every token and put back the record factory ``install`` wrapped: for a test process that
    runs many crawls, each with its own token (a crawl's process installs its token once)."""
    global _pattern, _factory_before
    if _factory_before is not None:
        logging.setLogRecordFactory(_factory_before)
    _factory_before, _pattern = None, None
    _masks.clear()
    _forms.clear()
