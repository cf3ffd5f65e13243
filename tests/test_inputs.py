"""Keyword files and the JUSTONEAPI_* settings: clear errors that name the problem and the fix."""

from __future__ import annotations

import pytest
from scrapy.settings import Settings

from rednote_crawl.config import ApiConfig, ConfigError
from rednote_crawl.seeds import SeedFileError, read_keywords


def test_keyword_file_rules(tmp_path):
    path = tmp_path / "k.txt"
    path.write_bytes(
        "\ufeff# comment\r\n  海信  \r\n\r\nNike\r\n\t\r\n海信\nAT&T ? + %\n  # indented comment\n".encode()
    )
    assert read_keywords(path) == ["海信", "Nike", "AT&T ? + %"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"\n \n# x\n"), "has no keywords"),
        (lambda p: p.write_bytes("海信".encode("gbk")), "is not UTF-8"),
    ],
)
def test_unusable_keyword_files(tmp_path, make, message):
    path = tmp_path / "k.txt"
    make(path)
    with pytest.raises(SeedFileError, match=message):
        read_keywords(path)


def test_unreadable_keyword_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SeedFileError, match=r"cannot be read \(Not a directory\)"):
        read_keywords(tmp_path / "file" / "k.txt")


def config(env=None, **settings) -> ApiConfig:
    return ApiConfig.from_settings(Settings(settings), environ=env or {})


def test_token_and_base_url_come_from_the_environment_or_settings():
    from_env = config({"JUSTONEAPI_TOKEN": " abc ", "JUSTONEAPI_BASE_URL": "http://127.0.0.1:1/"})
    assert (from_env.token, from_env.base_url) == ("abc", "http://127.0.0.1:1")
    from_setting = config({"JUSTONEAPI_TOKEN": "env"}, JUSTONEAPI_TOKEN="setting")
    assert from_setting.token == "setting" and from_setting.base_url == "https://api.justoneapi.com"
    assert "setting" not in repr(from_setting)


def test_defaults():
    c = config({"JUSTONEAPI_TOKEN": "t"})
    assert (c.timeout, c.max_rps, c.max_requests, c.max_pages, c.note_time_style) == (60, 50, 0, 20, "vendor")


def test_no_token_points_at_the_sandbox():
    with pytest.raises(ConfigError, match=r"no API token.*JUSTONEAPI_TOKEN.*JUSTONEAPI_SANDBOX=1"):
        config()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("JUSTONEAPI_TIMEOUT", "abc", "JUSTONEAPI_TIMEOUT='abc' is not a number"),
        ("JUSTONEAPI_TIMEOUT", "nan", "JUSTONEAPI_TIMEOUT='nan' is not a finite number"),
        ("JUSTONEAPI_MAX_RPS", "inf", "JUSTONEAPI_MAX_RPS='inf' is not a finite number"),
        ("JUSTONEAPI_TIMEOUT", "0.5", "JUSTONEAPI_TIMEOUT='0.5' is too small"),
        ("JUSTONEAPI_MAX_RPS", "-1", "JUSTONEAPI_MAX_RPS='-1' is too small"),
        ("JUSTONEAPI_MAX_REQUESTS", "1.5", "JUSTONEAPI_MAX_REQUESTS='1.5' is not a whole number"),
        ("JUSTONEAPI_MAX_PAGES", "0", "JUSTONEAPI_MAX_PAGES='0' is too small"),
        ("JUSTONEAPI_NOTE_TIME_STYLE", "english", "use one of: vendor, chinese"),
        ("JUSTONEAPI_BASE_URL", "api.justoneapi.com", "is not an http"),
        ("JUSTONEAPI_BASE_URL", "https://h/?token=x", "is not an http"),
        ("JUSTONEAPI_BASE_URL", "http://127.0.0.1:99999", "Port out of range"),
        ("JUSTONEAPI_BASE_URL", "http://[::1", "Invalid IPv6 URL"),
        ("JUSTONEAPI_BASE_URL", "http://exa mple.com", "it holds a space"),
        ("JUSTONEAPI_MAX_REQUEST", "5", "unknown setting JUSTONEAPI_MAX_REQUEST; did you mean JUSTONEAPI_MAX_REQUESTS"),
        ("JUSTONEAPI_SEEN_NOTES", "keep", "use one of: skip, update"),
        ("JUSTONEAPI_KEEP_RAW", "maybe", "JUSTONEAPI_KEEP_RAW='maybe' is not a boolean"),
        ("JUSTONEAPI_BACKOFF_MAX", "0.1", "JUSTONEAPI_BACKOFF_MAX=0.1 is below JUSTONEAPI_BACKOFF_BASE"),
        ("JUSTONEAPI_REDIS_HEARTBEAT", "0", "JUSTONEAPI_REDIS_HEARTBEAT='0' is too small"),
        ("JUSTONEAPI_REDIS_HEARTBEAT", "31", "JUSTONEAPI_REDIS_LEASE=60.0 is shorter than two heartbeats"),
    ],
)
def test_bad_settings_name_the_setting(name, value, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace("(", r"\(")):
        config({"JUSTONEAPI_TOKEN": "t"}, **{name: value})


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("HTTP://127.0.0.1:8/", "http://127.0.0.1:8"),
        ("https://API.JustOneAPI.com", "https://api.justoneapi.com"),
        ("http://[::1]:80/x/", "http://[::1]:80/x"),
    ],
)
def test_the_base_url_is_normalised_like_scrapy_normalises_request_urls(raw, normal):
    assert config({"JUSTONEAPI_TOKEN": "t", "JUSTONEAPI_BASE_URL": raw}).base_url == normal
