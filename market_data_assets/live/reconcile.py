"""Live vs batch candles of one (day, exchange), bucket by bucket, explained by the recorded gaps.

Every batch bucket is ``equal`` (every column within the tolerance), ``differs`` (the columns that
differ are named), ``missing_live`` (live has no row) or ``not_streamed`` (before the service's
first row of that instrument-day: nothing to compare); a live bucket batch lacks is ``extra_live``.
A non-equal bucket is *explained* when it overlaps a recorded gap ``[gap_from, gap_to]``. The
``live_reconciliation`` asset writes this report and its check fails on any unexplained bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from market_data_assets.candles.compute import KEY
from market_data_assets.candles.schema import CANDLE_SCHEMA
from market_data_assets.candles.timeframes import get_timeframe
from market_data_assets.days import day_bounds
from market_data_assets.storage import layout
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.frames import scan_files

REL_TOL = 1e-9
"""Float sums may differ by summation order only (docs/CANDLES.md)."""
_ABS_TOL = 1e-12
COMPARED: tuple[str, ...] = tuple(n for n in CANDLE_SCHEMA.names if n not in (KEY, "timestamp"))
REPORT_SCHEMA: dict[str, pl.DataType] = {
    KEY: pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "status": pl.String(),
    "columns": pl.List(pl.String()),
    "in_gap": pl.Boolean(),
}


@dataclass(frozen=True)
class Reconciliation:
    report: pl.DataFrame
    """One row per bucket that is not ``equal`` or ``not_streamed`` (``REPORT_SCHEMA``)."""
    equal: int
    differing: int
    explained: int
    unexplained: int
    not_streamed: int

    def summary(self) -> dict[str, int]:
        return {
            "equal": self.equal,
            "differing": self.differing,
            "explained_by_gaps": self.explained,
            "unexplained": self.unexplained,
            "not_streamed": self.not_streamed,
        }


def _differs(name: str, dtype: pl.DataType) -> pl.Expr:
    a, b = pl.col(name), pl.col(f"{name}_live")
    one_null = a.is_null() != b.is_null()
    if dtype.is_float():
        both_nan = a.is_nan() & b.is_nan()
        far = (a - b).abs() > pl.max_horizontal(a.abs(), b.abs()) * REL_TOL + _ABS_TOL
        return one_null | (a.is_not_null() & b.is_not_null() & ~both_nan & (far | (a.is_nan() != b.is_nan())))
    return one_null | (a.is_not_null() & b.is_not_null() & (a != b))


def reconcile(batch: pl.DataFrame, live: pl.DataFrame, gaps: pl.DataFrame, timeframe: str) -> Reconciliation:
    """Compare ``batch`` and ``live`` candles (``CANDLE_SCHEMA`` columns) of one day and exchange.

    ``gaps``: the recorded gaps (``gap_from``, ``gap_to`` timestamps) that may explain differences.
    """
    width = get_timeframe(timeframe).us
    live = live.select(CANDLE_SCHEMA.names)
    first_live = live.group_by(KEY).agg(pl.col("timestamp").min().alias("_first_live"))
    joined = (
        batch.select(CANDLE_SCHEMA.names)
        .with_columns(pl.lit(True).alias("_in_batch"))
        .join(
            live.rename({n: f"{n}_live" for n in COMPARED}).with_columns(pl.lit(True).alias("_in_live")),
            on=[KEY, "timestamp"],
            how="full",
            coalesce=True,
        )
        .join(first_live, on=KEY, how="left")
    )
    schema = dict(batch.schema)
    diff_names = pl.concat_list(
        [pl.when(_differs(n, schema[n])).then(pl.lit(n)).otherwise(pl.lit(None, pl.String)) for n in COMPARED]
    ).list.drop_nulls()
    in_batch, in_live = pl.col("_in_batch").fill_null(False), pl.col("_in_live").fill_null(False)
    status = (
        pl.when(
            in_batch
            & ~in_live
            & (pl.col("_first_live").is_null() | (pl.col("timestamp") < pl.col("_first_live")))
        )
        .then(pl.lit("not_streamed"))
        .when(in_batch & ~in_live)
        .then(pl.lit("missing_live"))
        .when(~in_batch)
        .then(pl.lit("extra_live"))
        .when(diff_names.list.len() > 0)
        .then(pl.lit("differs"))
        .otherwise(pl.lit("equal"))
    )
    rows = joined.select(
        KEY,
        "timestamp",
        status.alias("status"),
        pl.when(in_batch & in_live)
        .then(diff_names)
        .otherwise(pl.lit([], pl.List(pl.String)))
        .alias("columns"),
    )
    start = pl.col("timestamp").cast(pl.Int64)
    spans = gaps.select(
        pl.col("gap_from").cast(pl.Datetime("us", "UTC")).cast(pl.Int64).alias("_lo"),
        pl.col("gap_to").cast(pl.Datetime("us", "UTC")).cast(pl.Int64).alias("_hi"),
    )
    in_gap = (
        pl.any_horizontal(
            *[
                (start < hi) & (start + width > lo) | ((start <= hi) & (start >= lo))
                for lo, hi in spans.iter_rows()
            ]
        )
        if spans.height
        else pl.lit(False)
    )
    rows = rows.with_columns(in_gap.alias("in_gap"))
    counts = rows.group_by("status", "in_gap").len()

    def n(status: tuple[str, ...], gap: bool | None = None) -> int:
        sel = counts.filter(pl.col("status").is_in(list(status)))
        if gap is not None:
            sel = sel.filter(pl.col("in_gap") == gap)
        return int(sel["len"].sum())

    bad = ("differs", "missing_live", "extra_live")
    report = rows.filter(pl.col("status").is_in(list(bad))).sort(KEY, "timestamp").cast(REPORT_SCHEMA)  # pyright: ignore[reportArgumentType]
    return Reconciliation(
        report=report,
        equal=n(("equal",)),
        differing=n(bad),
        explained=n(bad, True),
        unexplained=n(bad, False),
        not_streamed=n(("not_streamed",)),
    )


# --- reading one (day, exchange) from the lake -------------------------------------------------


def _read_all(store: ObjectStore, paths: list[str]) -> pl.DataFrame | None:
    """Every file's rows (``storage.frames``: one read, not a request per file in turn)."""
    if not paths:
        return None
    frame = scan_files(store, paths).collect()
    return frame if frame.height else None


def reconcile_lake(store: ObjectStore, day: date, exchange: str, timeframe: str = "15s") -> Reconciliation:
    """``reconcile`` over the lake: batch ``processed_candles`` vs ``live_candles`` of (day, exchange),
    with the gaps recorded on that day and the day before (a gap may span midnight)."""
    empty = pl.DataFrame(schema=dict(pl.from_arrow(CANDLE_SCHEMA.empty_table()).schema))  # pyright: ignore[reportAttributeAccessIssue]
    batch_paths = [
        o.path
        for o in layout.exchange_files(store, layout.candles_dir(day, timeframe), exchange)
        if o.path.endswith(".parquet")
    ]
    live_paths = [
        o.path
        for o in store.list(f"{layout.live_candles_dir(day, timeframe)}/{exchange}_")
        if o.path.endswith(".parquet")
    ]
    gap_paths = [
        o.path
        for d in (day - timedelta(days=1), day)
        for o in store.list(layout.live_gaps_dir(d, exchange) + "/")
        if o.path.endswith(".parquet")
    ]
    batch = _read_all(store, batch_paths)
    live = _read_all(store, live_paths)
    if live is not None:
        lo, hi = day_bounds(day)
        live = (
            live.filter((pl.col("timestamp") >= lo) & (pl.col("timestamp") < hi))
            .unique([KEY, "timestamp"], keep="first", maintain_order=True)
            .select(CANDLE_SCHEMA.names)
        )
    gaps = _read_all(store, gap_paths)
    return reconcile(
        batch if batch is not None else empty,
        live if live is not None else empty,
        gaps
        if gaps is not None
        else pl.DataFrame(schema={"gap_from": pl.Datetime("us", "UTC"), "gap_to": pl.Datetime("us", "UTC")}),
        timeframe,
    )
