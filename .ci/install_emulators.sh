#!/usr/bin/env bash
# Installs the BigQuery emulator (its own Python 3.13 venv) and Chromium for the browser test.
# Filled in by the emulator/browser work; idempotent.
set -euo pipefail
