"""The README's command lines, run for real: `dagster asset materialize …` and `market-data missing …`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl

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
            # the checkout under test, also when the venv's editable install points at another one
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
    assert result.returncode == 0, result.stderr
    assert "1 gaps" in result.stdout and "BITMEX:PERP:BTC-USD" in result.stdout
    report = pl.read_csv(out_csv)
    gaps = report.filter(pl.col("status") != "present")
    assert gaps.select("data_type", "instrument_key", "status").rows() == [
        ("trades", "BITMEX:PERP:BTC-USD", "missing")
    ]

    one_type = [str(BIN / "market-data"), "missing", "--start", "2024-03-01", "--end", "2024-03-01"]
    only_books = _run([*one_type, "--exchange", "bitmex", "--data-type", "book_snapshot_5"], env)
    assert only_books.returncode == 0 and "0 gaps" in only_books.stdout

    bad = _run([str(BIN / "market-data"), "missing", "--start", "2024-03-05", "--end", "2024-03-01"], env)
    assert bad.returncode == 2 and "before start" in bad.stderr
