"""Raw ticks: Tardis CSV.gz -> typed Parquet per instrument, and the partition pipeline around it.

- ``convert.convert_csv_gz``: stream one CSV.gz into tuned Parquet files (temporary names), split
  per instrument key, validated with errors that name the file and line (``errors``).
- ``manifest``: the per-(day, exchange) ledger of what was written (``MANIFEST_SCHEMA``,
  ``read_manifest``), read by the missing-data report and used to resume.
- ``pipeline.materialize_raw_ticks``: download concurrently, convert in worker threads, publish
  atomically, record; failures are results, not exceptions.
"""
