"""``python -m rednote_crawl.sandbox``: serve the offline replica of the API on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from rednote_crawl.sandbox.server import FAULT_KINDS, Fault, SandboxConfig, SandboxServer


def _at_least(minimum: float, kind: type = float):
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is below {minimum}")
        return value

    return parse


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def _token_code(text: str) -> tuple[str, int]:
    token, _, code = text.rpartition("=")
    if not token or not code.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not TOKEN=CODE, e.g. broke-token=601")
    return token, int(code)


def _fault(text: str) -> Fault:
    try:
        return Fault.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rednote_crawl.sandbox",
        description="Offline replica of Just One API's Xiaohongshu note search v2, on 127.0.0.1.",
        epilog=(
            "Then crawl it: JUSTONEAPI_BASE_URL=http://127.0.0.1:PORT JUSTONEAPI_TOKEN=anything "
            "scrapy crawl note_search -a keywords=seeds/brands.txt"
        ),
    )
    parser.add_argument("--port", type=_port, default=8765, help="port on 127.0.0.1 (0 picks a free one; default 8765)")
    parser.add_argument("--seed", type=int, default=7, help="data seed (default 7)")
    parser.add_argument(
        "--latency", type=_at_least(0), default=0.0, help="seconds per call, +-20%% (the real API: 0.5-0.7)"
    )
    parser.add_argument("--rate-limit", type=_at_least(0.001), help="calls per second per token; more answer 302")
    parser.add_argument("--retry-after", type=_at_least(0), help="send Retry-After: SECONDS with 302 answers")
    parser.add_argument(
        "--quota", type=_at_least(0, int), help="paid calls per token; after that every call answers 303"
    )
    parser.add_argument(
        "--token", action="append", default=[], help="a valid token (repeat); default: any token is valid"
    )
    parser.add_argument(
        "--token-code",
        type=_token_code,
        action="append",
        default=[],
        metavar="TOKEN=CODE",
        help="answer CODE (100, 600, 601) to TOKEN",
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="SPEC",
        help=f"KIND[:RATE][@KEYWORD[#PAGE]][xTIMES], KIND {FAULT_KINDS}; e.g. 301:0.1 or html502@Nike#2x1",
    )
    parser.add_argument(
        "--slow-seconds", type=_at_least(0), default=5.0, help="how long a 'slow' fault stalls (default 5)"
    )
    parser.add_argument(
        "--status-style",
        choices=("mapped", "200"),
        default="mapped",
        help="HTTP status of error answers (default: mapped like the OpenAPI)",
    )
    parser.add_argument("--cassettes", metavar="DIR", help="serve the answers recorded in the betamax cassettes of DIR")
    parser.add_argument(
        "--replay-only", action="store_true", help="with --cassettes: answer 404 to calls never recorded"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = SandboxConfig(
        seed=args.seed,
        latency=args.latency,
        rate_limit=args.rate_limit,
        retry_after=args.retry_after,
        quota=args.quota,
        tokens=frozenset(args.token) or None,
        token_codes=dict(args.token_code),
        faults=args.fault,
        slow_seconds=args.slow_seconds,
        status_style=args.status_style,
        cassettes=args.cassettes,
        replay_only=args.replay_only,
    )
    try:
        server = SandboxServer(config)
    except (OSError, ValueError) as exc:
        print(f"error: cannot load --cassettes {args.cassettes}: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        url = await server.start(port=args.port)
        print(f"sandbox serving {url} (Ctrl-C to stop)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(serve())
        except OSError as exc:
            print(
                f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}; pick another --port", file=sys.stderr
            )
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
