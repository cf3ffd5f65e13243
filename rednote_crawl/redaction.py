"""Keeping the API token, and the notification URLs' secrets, out of every log line.

The token is only ever added to a request at the last hop (``downloader/handler.py``), so no
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
from urllib.parse import quote, urlsplit

_forms: list[str] = []  # every token of this process, raw and URL-encoded, longest first
_masks: dict[str, str] = {}
_anywhere: set[str] = set()  # forms masked wherever they stand, however short (a notification URL's password)
_pattern: re.Pattern[str] | None = None
_factory_before: Any = None  # the log record factory install() wrapped, for reset()
# A token as long as a real one is masked wherever it stands. One as short as a word (the
# sandbox takes "any") only where it is a token, after "token=": "note_time any" stays as it is.
_WORD = r"[A-Za-z0-9_\-]"
SHORT_TOKEN = 16  # characters: real tokens are longer (a shorter one is a placeholder or a typo)


def mask(token: str) -> str:
    """What may be shown of a token: its first 4 characters at most."""
    return f"{token[:4]}…" if len(token) > 8 else "…"


def mask_url(url: str) -> str:
    """What may be shown of a notification URL (an Apprise URL holds webhook keys and passwords):
    its scheme and host, ``json://127.0.0.1:8080/…``; for a URL whose host is itself a key
    (``dingtalk://TOKEN``), only the scheme."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "…"
    if not parts.scheme:
        return "…"
    if "." not in host and host != "localhost":
        return f"{parts.scheme}://…"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/…"


def secret_parts(url: str) -> list[str]:
    """The parts of a notification URL that are secrets wherever they stand: the URL itself, its
    password, and every word of it long enough to be a key (a webhook's path, a bot token)."""
    parts = [url]
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password and len(password) >= 6:
        parts.append(password)
    parts += [word for word in re.split(r"[/:@?&=#]+", url.partition("://")[2]) if len(word) >= SHORT_TOKEN]
    return parts


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


def _install_factory() -> None:
    global _factory_before
    previous = _factory_before = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _forms and _may_be_written(record.levelno):
            _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)


def install(token: str) -> None:
    """Mask ``token`` in every log record from now on (idempotent)."""
    if not token:
        return
    if not _masks:
        _install_factory()
    for form in (token, quote(token, safe=""), quote(token)):
        _masks.setdefault(form, mask(token))
    _compile()


def install_url(url: str) -> None:
    """Mask a notification URL (and its secrets: ``secret_parts``) in every log record from now on."""
    if not url:
        return
    shown = mask_url(url)
    first = not _masks
    for part in secret_parts(url):
        for form in (part, quote(part, safe="")):
            _masks.setdefault(form, shown if part == url else "…")
            _anywhere.add(form)
    if first:
        _install_factory()
    _compile()


def _compile() -> None:
    global _pattern
    _forms[:] = sorted(_masks, key=len, reverse=True)
    long_forms = [form for form in _forms if len(form) >= SHORT_TOKEN or form in _anywhere]
    short_forms = [form for form in _forms if form not in long_forms]
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
    _anywhere.clear()
