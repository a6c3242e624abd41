"""The README's command lines, run for real: `dagster asset materialize …` and `market-data missing …`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from market_data_assets.storage import layout

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env(sandbox, root: Path, home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARKET_DATA_", "TARDIS_", "DAGSTER_"))}
    env.update(
        {
            "MARKET_DATA_ROOT": str(root),
            "TARDIS_API_URL": sandbox.api_url,
            "TARDIS_DATASETS_URL": sandbox.datasets_url,
            "TARDIS_API_KEY": sandbox.api_key,
            "DAGSTER_HOME": str(home),
            # The console scripts of the shared venv import the package it was installed from;
            # this makes them run the code of the checkout under test.
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_dagster_cli_materializes_raw_ticks_of_a_partition(sandbox, tmp_path):
    root = tmp_path / "lake"
    env = _env(sandbox, root, tmp_path / "home")
    result = _run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "market_data_assets.definitions",
            "--select",
            "instrument_definitions,download_targets,raw_ticks",
            "--partition",
            "2024-03-01|binance-futures",
        ],
        env,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    day = date(2024, 3, 1)
    assert (root / layout.instruments_path(day, "binance-futures")).is_file()
    targets = pl.read_parquet(root / layout.targets_path(day, "binance-futures"))
    manifest = pl.read_parquet(root / layout.raw_manifest_path(day, "binance-futures"))
    for data_type, key in targets.select("data_type", "instrument_key").iter_rows():
        assert (root / layout.raw_ticks_path(day, data_type, key)).is_file(), (data_type, key)
    assert set(manifest["status"]) == {"ok"}
    # The run is recorded in the instance.
    assert any((tmp_path / "home").rglob("*.db"))


def test_market_data_missing_prints_and_writes(pipeline_lake, sandbox, tmp_path):
    import shutil

    root = tmp_path / "lake"
    shutil.copytree(pipeline_lake.root, root)
    env = _env(sandbox, root, tmp_path / "home")
    victim = root / layout.raw_ticks_path(date(2024, 3, 1), "trades", "BITMEX:PERP:BTC-USD")
    victim.unlink()
    out_csv = tmp_path / "gaps.csv"
    result = _run(
        [
            str(BIN / "market-data"),
            "missing",
            "--start",
            "2024-02-28",
            "--end",
            "2024-03-02",
            "--exchange",
            "bitmex",
            "--output",
            str(out_csv),
        ],
        env,
    )
    assert result.returncode == 1, result.stderr  # a gap
    assert "1 gaps" in result.stderr and "BITMEX:PERP:BTC-USD" in result.stdout  # piped: CSV on stdout
    report = pl.read_csv(out_csv)
    gaps = report.filter(pl.col("status") != "present")
    assert gaps.select("data_type", "instrument_key", "status").rows() == [
        ("trades", "BITMEX:PERP:BTC-USD", "missing")
    ]

    one_type = [str(BIN / "market-data"), "missing", "--start", "2024-03-01", "--end", "2024-03-01"]
    only_books = _run(
        [*one_type, "--exchange", "bitmex", "--data-type", "book_snapshot_5", "--format", "table"], env
    )
    assert only_books.returncode == 0 and "0 gaps" in only_books.stdout

    bad = _run([str(BIN / "market-data"), "missing", "--start", "2024-03-05", "--end", "2024-03-01"], env)
    assert bad.returncode == 2 and "before --start" in bad.stderr


def test_market_data_missing_is_scriptable(pipeline_lake, sandbox, tmp_path):
    """Exit 0/1/2; csv when piped and jsonl with full keys, full detail and every file's path;
    argument errors in one line before any work; --verify finds flipped bytes (corrupt)."""
    import io
    import json
    import shutil

    root = tmp_path / "lake"
    shutil.copytree(pipeline_lake.root, root)
    env = _env(sandbox, root, tmp_path / "home")
    day = ["--start", "2024-03-01", "--end", "2024-03-01", "--exchange", "bitmex"]
    missing = [str(BIN / "market-data"), "missing", *day]

    clean = _run([*missing, "--verify"], env)
    assert clean.returncode == 0, clean.stderr
    expected = pl.read_csv(io.StringIO(clean.stdout))
    assert expected.height > 0 and set(expected["status"]) == {"present"}
    assert all(
        p == str(root / layout.raw_ticks_path(date(2024, 3, 1), dt, key))
        for p, dt, key in expected.select("path", "data_type", "instrument_key").iter_rows()
    ), "every expected file's full path"

    (root / layout.raw_ticks_path(date(2024, 3, 1), "trades", "BITMEX:PERP:BTC-USD")).unlink()
    flipped = root / layout.raw_ticks_path(date(2024, 3, 1), "book_snapshot_5", "BITMEX:PERP:BTC-USD")
    data = bytearray(flipped.read_bytes())
    data[100:500] = bytes(b ^ 0xFF for b in data[100:500])
    flipped.write_bytes(bytes(data))

    plain = _run(missing, env)
    assert plain.returncode == 1
    rows = {
        (r["data_type"], r["instrument_key"]): r for r in pl.read_csv(io.StringIO(plain.stdout)).to_dicts()
    }
    assert (
        rows[("trades", "BITMEX:PERP:BTC-USD")]["detail"] == "recorded in the manifest but no longer stored"
    )
    assert (
        rows[("book_snapshot_5", "BITMEX:PERP:BTC-USD")]["status"] == "present"
    )  # same size: only --verify sees it

    verified = _run([*missing, "--verify", "--format", "jsonl"], env)
    assert verified.returncode == 1
    rows = {(r["data_type"], r["instrument_key"]): r for r in map(json.loads, verified.stdout.splitlines())}
    corrupt = rows[("book_snapshot_5", "BITMEX:PERP:BTC-USD")]
    assert corrupt["status"] == "corrupt" and "SHA-256" in corrupt["detail"]
    assert corrupt["path"] == str(flipped)

    for bad_args, needle in [
        (["--output", str(tmp_path / "nodir" / "g.csv")], "does not exist"),
        (["--output", str(tmp_path / "g.txt")], ".csv"),
        (["--exchange", "../x"], "invalid exchange id"),
        (["--exchange", "bitmex\n"], "invalid exchange id"),
        (["--start", "2024-13-01"], "--start"),
    ]:
        args = (
            [*missing, *bad_args]
            if bad_args[0] != "--start"
            else [missing[0], missing[1], *bad_args, "--end", "2024-03-01"]
        )
        bad = _run(args, env)
        assert bad.returncode == 2, (bad_args, bad.stderr)
        assert bad.stdout == "", "nothing is computed before the arguments are checked"
        assert len(bad.stderr.strip().splitlines()) == 1 and needle in bad.stderr, bad.stderr
    assert not (tmp_path / "g.txt").exists()


@pytest.mark.slow
def test_clean_staging_removes_what_dead_runs_left(tmp_path):
    import json
    import socket

    root = tmp_path / "lake"
    staging = root / ".staging"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    for name, pid in (("raw-ticks-dead", int(dead.stdout)), ("raw-ticks-live", os.getpid())):
        (staging / name).mkdir(parents=True)
        (staging / name / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
        (staging / name / ".000001.csv.gz.part-abc").write_bytes(b"x" * 1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_DATA_")}
    env["PYTHONPATH"] = str(REPO)
    result = _run([str(BIN / "market-data"), "clean-staging", "--root", str(root)], env)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in staging.iterdir()) == ["raw-ticks-live"]
    assert "removed 1 entries (1,0" in result.stdout
