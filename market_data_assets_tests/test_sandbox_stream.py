"""The sandbox's live stream (/ws-stream-normalized): the CSV files' events over a real WebSocket, the
clock running on through reconnections, and every fault kind."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import date

import aiohttp
import pytest

from market_data_assets.sandbox import SandboxConfig, generate_csv, start_sandbox
from market_data_assets.sandbox.stream import StreamFault, parse_live_start

pytestmark = pytest.mark.servers


DAY = date(2024, 3, 1)
CONFIG = SandboxConfig(trades_per_day=300)
OPTIONS = {
    "exchange": "binance-futures",
    "symbols": ["btcusdt", "ETHUSDT"],
    "dataTypes": ["trade", "book_snapshot_5_0ms", "derivative_ticker"],
    "withErrorMessages": True,
}


def _us(text: str) -> int:
    return parse_live_start(text)


async def _read(url: str, limit: int, options: dict = OPTIONS) -> tuple[list[dict], int | None]:
    out: list[dict] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url + "/ws-stream-normalized", params={"options": json.dumps(options)}) as ws,
    ):
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            out.append(json.loads(msg.data))
            if len(out) >= limit:
                break
        return out, ws.close_code


def _csv_rows(data_type: str, symbol: str, day: date) -> list[list[str]]:
    return list(
        csv.reader(io.StringIO(generate_csv(CONFIG, "binance-futures", data_type, day, symbol).decode()))
    )[1:]


def test_stream_carries_the_csv_events_in_local_order() -> None:
    with start_sandbox(CONFIG, live_start_us=_us("2024-03-01T00:00:00Z"), live_speed=0) as sandbox:
        expected = {
            (t, s): _csv_rows(f, s, DAY)
            for t, f in (
                ("trade", "trades"),
                ("book_snapshot", "book_snapshot_5"),
                ("derivative_ticker", "derivative_ticker"),
            )
            for s in ("BTCUSDT", "ETHUSDT")
        }
        total = sum(len(v) for v in expected.values())
        messages, _ = asyncio.run(_read(sandbox.ws_url, total))
    assert len(messages) == total
    locals_ = [_us(m["localTimestamp"]) for m in messages]
    assert locals_ == sorted(locals_)
    for (kind, symbol), rows in expected.items():
        got = [m for m in messages if m["type"] == kind and m["symbol"] == symbol]
        assert len(got) == len(rows), (kind, symbol)
        for m, r in zip(got, rows, strict=True):
            assert _us(m["timestamp"]) == int(r[2]) and _us(m["localTimestamp"]) == int(r[3])
            if kind == "trade":
                assert (m["id"], m["side"], m["price"], m["amount"]) == (r[4], r[5], float(r[6]), float(r[7]))
            elif kind == "book_snapshot":
                assert m["name"] == "book_snapshot_5_0ms" and m["depth"] == 5
                assert (m["asks"][0]["price"], m["bids"][0]["amount"]) == (float(r[4]), float(r[7]))
            else:
                assert m["markPrice"] == (float(r[10]) if r[10] else None)


def test_clock_runs_on_through_reconnections_and_faults_fire() -> None:
    faults = (
        StreamFault("duplicate", after=10, count=1),
        StreamFault("error", after=20, count=2),
        StreamFault("disconnect", after=30, seconds=3600),
        StreamFault("backpressure", after=50),
        StreamFault("close", after=80),
    )
    with start_sandbox(
        CONFIG, live_start_us=_us("2024-03-01T00:00:00Z"), live_speed=0, stream_faults=faults
    ) as sandbox:
        first, code = asyncio.run(_read(sandbox.ws_url, 1000))
        assert code == 1008
        second, _ = asyncio.run(_read(sandbox.ws_url, 1000))
        third, _ = asyncio.run(_read(sandbox.ws_url, 5))
        assert sandbox.stream_connections == 3
    data = [m for m in first if m["type"] not in ("error", "disconnect")]
    texts = [json.dumps(m, sort_keys=True) for m in data]
    assert len(texts) - len(set(texts)) == 1  # the duplicated message
    errors = [m for m in first if m["type"] == "error"]
    assert [e["subSequentErrorsCount"] for e in errors] == [1, 2]
    (disconnect,) = [m for m in first if m["type"] == "disconnect"]
    assert disconnect["symbols"] == ["BTCUSDT", "ETHUSDT"]
    after = first[first.index(disconnect) + 1]
    assert _us(after["localTimestamp"]) >= _us(disconnect["localTimestamp"]) + 3600 * 10**6
    # the clock ran on: each connection resumes after the previous one's last message
    assert _us(second[0]["localTimestamp"]) > _us(first[-1]["localTimestamp"])
    assert 0 < len(second) < 1000  # the abrupt close
    assert _us(third[0]["localTimestamp"]) > _us(second[-1]["localTimestamp"])


def test_bad_options_answer_400() -> None:
    with start_sandbox(CONFIG) as sandbox:

        async def go() -> int:
            async with aiohttp.ClientSession() as session:
                bad = json.dumps(
                    {"exchange": "binance-futures", "symbols": ["BTCUSDT"], "dataTypes": ["nope"]}
                )
                async with session.get(sandbox.url + "/ws-stream-normalized", params={"options": bad}) as r:
                    return r.status

        assert asyncio.run(go()) == 400


@pytest.mark.parametrize("text", ["bogus@1", "close@x"])
def test_stream_fault_parse_names_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match="--stream-fault"):
        StreamFault.parse(text)
