"""``python -m rednote_crawl.sandbox``: serve the offline replica of the API on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from rednote_crawl.sandbox.server import FAULT_KINDS, Fault, SandboxConfig, SandboxServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rednote_crawl.sandbox",
        description="Offline replica of Just One API's Xiaohongshu note search v2, on 127.0.0.1.",
        epilog=(
            "Then crawl it: JUSTONEAPI_BASE_URL=http://127.0.0.1:PORT JUSTONEAPI_TOKEN=anything "
            "scrapy crawl note_search -a keywords=seeds/brands.txt"
        ),
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0 picks a free one; default 8765)")
    parser.add_argument("--seed", type=int, default=7, help="data seed (default 7)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per call, +-20%% (the real API: 0.5-0.7)")
    parser.add_argument("--rate-limit", type=float, help="calls per second per token; more answer 302")
    parser.add_argument("--quota", type=int, help="successful calls per token; after that every call answers 303")
    parser.add_argument(
        "--token", action="append", default=[], help="a valid token (repeat); default: any token is valid"
    )
    parser.add_argument(
        "--token-code", action="append", default=[], metavar="TOKEN=CODE", help="answer CODE (100, 600, 601) to TOKEN"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help=(
            f"KIND[:RATE][@KEYWORD[#PAGE]][xTIMES], KIND one of {', '.join(sorted(FAULT_KINDS))}; "
            "e.g. 301:0.1 or html502@Nike#2x1"
        ),
    )
    parser.add_argument("--cassettes", metavar="DIR", help="serve the answers recorded in the betamax cassettes of DIR")
    parser.add_argument(
        "--replay-only", action="store_true", help="with --cassettes: answer 404 to calls never recorded"
    )
    parser.add_argument(
        "--status-style",
        choices=("mapped", "200"),
        default="mapped",
        help="HTTP status of error answers (default: mapped like the OpenAPI)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        token_codes = {token: int(code) for token, _, code in (t.rpartition("=") for t in args.token_code)}
        config = SandboxConfig(
            seed=args.seed,
            latency=args.latency,
            rate_limit=args.rate_limit,
            quota=args.quota,
            tokens=frozenset(args.token) or None,
            token_codes=token_codes,
            faults=[Fault.parse(spec) for spec in args.fault],
            status_style=args.status_style,
            cassettes=args.cassettes,
            replay_only=args.replay_only,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = SandboxServer(config)

    async def serve() -> None:
        url = await server.start(port=args.port)
        print(f"sandbox serving {url} (Ctrl-C to stop)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
