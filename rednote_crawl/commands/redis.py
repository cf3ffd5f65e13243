"""``scrapy redis ACTION``: look at and act on a distributed crawl (REDIS_URL).

status         queue depth, requests in flight, pages, notes, workers, the rate, a stop
status --json  the same as JSON, for a dashboard (docs/distributed.md: its shape)
drain FILE     move the notes from ``<spider>:items`` into a JSON Lines file (appends)
resume         lift a crawl-wide stop (after fixing its cause) so workers run again
reset          clear the crawl (queue, dupefilter, leases, counters, stop); keep the notes
reset --notes  forget the notes too (seen notes and undrained items)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from rednote_crawl import stops
from rednote_crawl.commands import keep_description_lines
from rednote_crawl.config import ApiConfig, ConfigError
from rednote_crawl.run.report import plural

if TYPE_CHECKING:
    import argparse

    import redis

    from rednote_crawl.state.redis.keys import Keys

ACTIONS = ("status", "drain", "resume", "reset")


@dataclass(frozen=True, slots=True)
class RedisCrawl:
    """The crawl a command acts on (blocking calls: a command does nothing else meanwhile)."""

    server: redis.Redis
    keys: Keys
    url: str

    def status(self) -> dict[str, Any]:
        from rednote_crawl.run.redis_status import crawl_status

        return crawl_status(self.server, self.keys)

    @property
    def display_url(self) -> str:
        from rednote_crawl.state.redis.client import display_url

        return display_url(self.url)


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, object]] = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return "status [--json] | drain FILE | resume | reset [--notes] [--force]"

    def short_desc(self) -> str:
        return "Status, draining, resuming and resetting of a distributed crawl (REDIS_URL)"

    def long_desc(self) -> str:
        return __doc__ or ""

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        keep_description_lines(parser)
        parser.add_argument("--spider", default="note_search", help="the spider whose crawl it is (note_search)")
        parser.add_argument("--notes", action="store_true", help="reset: forget the notes too")
        parser.add_argument("--force", action="store_true", help="reset: even with live workers or undrained notes")
        parser.add_argument("--json", action="store_true", help="status: as JSON, for a dashboard")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if not args:
            raise UsageError(f"name an action: scrapy redis {self.syntax()}")
        if args[0] not in ACTIONS:
            raise UsageError(f"unknown action {args[0]!r}: scrapy redis {self.syntax()}")
        action, rest = args[0], args[1:]
        if (action == "drain") != (len(rest) == 1) or len(rest) > 1:
            raise UsageError(
                "drain takes one file: scrapy redis drain FILE" if action == "drain" else "too many arguments"
            )
        if opts.json and action != "status":
            raise UsageError("--json goes with status: scrapy redis status --json")
        assert self.settings is not None
        # Imported here, not at the top: Scrapy imports every command's module for each `scrapy crawl`.
        import redis

        from rednote_crawl.state.redis.client import connect, display_url, mask
        from rednote_crawl.state.redis.keys import Keys

        try:
            url = ApiConfig.from_settings(self.settings, require_token=False).redis_url
            if url is None:
                raise ConfigError(
                    "no Redis: set REDIS_URL (environment variable, or -s REDIS_URL=redis://HOST:PORT/DB)"
                )
            shared = RedisCrawl(connect(url, self.settings), Keys(opts.spider), url)
            self.exitcode = getattr(self, f"_{action}")(shared, opts, *rest)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exitcode = 2
        except redis.RedisError as exc:
            print(f"error: Redis at {display_url(url or '')}: {mask(str(exc), url or '')}", file=sys.stderr)
            self.exitcode = 1

    def _status(self, shared: RedisCrawl, opts: argparse.Namespace) -> int:
        if opts.json:
            import orjson

            from rednote_crawl.run.redis_status import status_document

            doc = status_document(shared.keys.spider, shared.url, shared.status())
            print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
            return 0
        from rednote_crawl.state.redis.client import mask

        status = shared.status()
        if status["stop"]:
            status["stop"]["message"] = mask(status["stop"].get("message") or "", shared.url)
        print(render_status(shared.keys.spider, shared.display_url, status))
        return 0

    def _drain(self, shared: RedisCrawl, opts: argparse.Namespace, path: str) -> int:
        from rednote_crawl.run.drain import DrainBusy, drain

        count = 0
        live = sys.stderr.isatty()
        try:
            for count in drain(shared.server, shared.keys, Path(path)):
                if live:
                    print(f"\r{plural(count, 'note')} written to {path}", end="", file=sys.stderr, flush=True)
        except DrainBusy as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(
                f"\ninterrupted: {plural(count, 'note')} written; run the same command again for the rest",
                file=sys.stderr,
            )
            return 1
        if live and count:
            print(file=sys.stderr)
        print(f"drained {plural(count, 'note')} from {shared.keys.items} into {path}")
        return 0

    def _resume(self, shared: RedisCrawl, opts: argparse.Namespace) -> int:
        stop = shared.server.hgetall(shared.keys.stop)
        if not stop:
            print("the crawl is not stopped")
            return 0
        shared.server.delete(shared.keys.stop, shared.keys.verdict)  # the crawl goes on: it will end again
        print(f"lifted the stop ({stop.get('reason')}: {stop.get('message')}); start workers to carry on")
        if stop.get("reason") == stops.BUDGET_SPENT.reason:
            calls = shared.server.hget(shared.keys.stats, "calls") or 0
            print(f"the crawl has made {calls} calls: start workers with a higher -s JUSTONEAPI_MAX_REQUESTS")
        return 0

    def _reset(self, shared: RedisCrawl, opts: argparse.Namespace) -> int:
        status = shared.status()
        if status["workers"] and not opts.force:
            print(
                f"error: {plural(len(status['workers']), 'worker')} still running ({', '.join(status['workers'])}); "
                "stop them first, or add --force",
                file=sys.stderr,
            )
            return 1
        keys = shared.keys.crawl_state()
        if opts.notes:
            if status["items"] and not opts.force:
                print(
                    f"error: {plural(status['items'], 'note')} in {shared.keys.items} are not drained yet; "
                    "run `scrapy redis drain FILE` first, or add --force to drop them",
                    file=sys.stderr,
                )
                return 1
            keys += shared.keys.notes()
        shared.server.delete(*keys)
        if opts.notes:
            seen = list(shared.server.scan_iter(match=f"{shared.keys.seen_notes}:*", count=1000))
            for start in range(0, len(seen), 1000):
                shared.server.delete(*seen[start : start + 1000])
            keys.append(f"{shared.keys.seen_notes}:*")
        kept = "" if opts.notes else f"; kept {plural(status['notes'], 'seen note')} and the items list"
        print(f"reset the crawl {shared.keys.spider}: cleared {', '.join(keys)}{kept}")
        return 0


def render_status(spider: str, url: str, status: dict[str, Any]) -> str:
    stats = status["stats"]
    lines = [
        f"Distributed crawl {spider} on Redis at {url}",
        f"  queries:  {stats.get('queries', 0)} seeded, {stats.get('queries_rejected', 0)} rejected",
        f"  requests: {status['queued']} queued, {status['in_flight']} in flight"
        + (f", {stats['leases_expired']} given back after their worker died" if stats.get("leases_expired") else ""),
        f"  pages:    {stats.get('pages_paid', 0)} paid, {stats.get('pages_failed', 0)} failed; "
        f"{plural(stats.get('calls', 0), 'call')} sent",
        f"  notes:    {status['notes']} delivered since the last `reset --notes`; "
        f"{status['items']} waiting in {spider}:items" + (" (scrapy redis drain FILE)" if status["items"] else ""),
    ]
    rate = status["rate"]
    rate_text = "not set yet (workers start at their JUSTONEAPI_MAX_RPS)" if rate is None else f"{rate:.2f} calls/s"
    lines.append(f"  rate:     {rate_text} for the token, all workers together")
    workers = status["workers"]
    lines.append(f"  workers:  {len(workers)} alive" + "".join(f"\n    {w}: {v}" for w, v in sorted(workers.items())))
    if stop := status["stop"]:
        lines.append(
            f"  STOPPED:  {stop.get('reason')}: {stop.get('message')} (by worker {stop.get('worker')}); "
            "fix the cause, then `scrapy redis resume`"
        )
    elif not status["queued"] and not status["in_flight"]:
        lines.append("  idle:     nothing queued or in flight")
    return "\n".join(lines)
