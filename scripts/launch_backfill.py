#!/usr/bin/env python
"""Launch an asset backfill through the Dagster webserver's GraphQL API (for cron jobs and scripts).

The same thing as the UI's "Materialize selected → backfill": Dagster's backfill daemon then splits
the partitions into runs by each asset's ``BackfillPolicy`` (``multi_run(N)``: one run per exchange per
N consecutive days, i.e. one GCE VM per shard in production) and the run queue starts them within the
instance's concurrency limits. This script only asks for the backfill; it does not wait for it.

Examples::

    # every day of Q1 2024 for two exchanges, three assets
    scripts/launch_backfill.py --url http://dagster:3000/graphql \\
        --asset raw_ticks --asset candles_15s --asset candles_1m \\
        --from 2024-01-01 --to 2024-03-31 --exchange binance --exchange deribit

    # a partition-key range; on date × exchange keys it is the rectangle
    # {dates between the two} × {exchanges between the two, in the partitions' order}
    scripts/launch_backfill.py --asset raw_ticks --partition-range "2024-01-01|binance" "2024-01-31|binance"

    # explicit keys
    scripts/launch_backfill.py --asset raw_ticks --partition "2024-01-15|binance" --partition "2024-01-16|binance"
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION

DEFAULT_URL = "http://127.0.0.1:3000/graphql"


class BackfillRequestError(RuntimeError):
    """The webserver refused or could not be reached; the message says which and why."""


def partition_keys(first: date, last: date, exchanges: Sequence[str]) -> list[str]:
    """Every ``YYYY-MM-DD|exchange`` key from ``first`` to ``last`` inclusive."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [f"{d.isoformat()}|{ex}" for d in days for ex in exchanges]


def asset_key_input(key: str) -> dict[str, list[str]]:
    """``prefix/name`` -> GraphQL ``AssetKeyInput``."""
    return {"path": key.split("/")}


def build_backfill_params(
    assets: Sequence[str],
    *,
    partition_names: Sequence[str] | None = None,
    partition_range: tuple[str, str] | None = None,
    tags: dict[str, str] | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """``LaunchBackfillParams`` for either explicit keys or one key range per asset."""
    if not assets:
        raise ValueError("name at least one --asset")
    if (partition_names is None) == (partition_range is None):
        raise ValueError("give either partition keys (--partition / --from/--to) or --partition-range")
    params: dict[str, Any] = {}
    if partition_names is not None:
        if not partition_names:
            raise ValueError("the selection has no partition keys")
        params["assetSelection"] = [asset_key_input(a) for a in assets]
        params["partitionNames"] = list(partition_names)
    else:
        start, end = partition_range  # pyright: ignore[reportGeneralTypeIssues]
        params["partitionsByAssets"] = [
            {"assetKey": asset_key_input(a), "partitions": {"range": {"start": start, "end": end}}}
            for a in assets
        ]
    if tags:
        params["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    if title:
        params["title"] = title
    return params


def launch_backfill(url: str, params: dict[str, Any], timeout: float = 60.0) -> str:
    """POST the mutation; return the backfill id or raise ``BackfillRequestError``."""
    body = json.dumps({"query": LAUNCH_PARTITION_BACKFILL_MUTATION, "variables": {"backfillParams": params}})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise BackfillRequestError(f"{url} answered HTTP {exc.code}: {exc.read()[:500]!r}") from None
    except urllib.error.URLError as exc:
        raise BackfillRequestError(f"cannot reach the Dagster webserver at {url}: {exc.reason}") from None
    if payload.get("errors"):
        raise BackfillRequestError(f"GraphQL errors from {url}: {payload['errors']}")
    result = payload["data"]["launchPartitionBackfill"]
    if result.get("__typename") != "LaunchBackfillSuccess":
        raise BackfillRequestError(f"backfill refused ({result.get('__typename')}): {result.get('message')}")
    return result["backfillId"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"webserver GraphQL endpoint (default {DEFAULT_URL})"
    )
    parser.add_argument("--asset", action="append", required=True, help="asset key (a/b for prefixed keys)")
    parser.add_argument("--partition", action="append", help="one partition key, e.g. 2024-01-15|binance")
    parser.add_argument("--from", dest="first", type=date.fromisoformat, help="first day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="last", type=date.fromisoformat, help="last day, inclusive")
    parser.add_argument("--exchange", action="append", help="exchange for --from/--to (repeat)")
    parser.add_argument("--partition-range", nargs=2, metavar=("START", "END"), help="first and last key")
    parser.add_argument("--tag", action="append", default=[], help="KEY=VALUE tag on every run")
    parser.add_argument("--title", help="backfill title shown in the UI")
    parser.add_argument("--dry-run", action="store_true", help="print the request instead of sending it")
    args = parser.parse_args(argv)
    if (args.first is None) != (args.last is None) or (args.first is not None and not args.exchange):
        parser.error("--from and --to go together, with at least one --exchange")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names: list[str] | None = None
    if args.partition or args.first:
        names = list(args.partition or [])
        if args.first:
            names += partition_keys(args.first, args.last, args.exchange)
    tags = dict(t.split("=", 1) for t in args.tag)
    try:
        params = build_backfill_params(
            args.asset,
            partition_names=names,
            partition_range=tuple(args.partition_range) if args.partition_range else None,
            tags=tags,
            title=args.title,
        )
    except ValueError as exc:
        print(f"launch_backfill: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps(params, indent=2))
        return 0
    try:
        backfill_id = launch_backfill(args.url, params)
    except BackfillRequestError as exc:
        print(f"launch_backfill: {exc}", file=sys.stderr)
        return 1
    print(backfill_id)
    print(f"see {args.url.removesuffix('/graphql')}/runs/b/{backfill_id}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
