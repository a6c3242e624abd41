#!/usr/bin/env bash
# Startup script of a Dagster run VM created by market_data_assets.launchers.gce.GceRunLauncher.
#
# The launcher stores this file as the VM's `startup-script` metadata; everything run-specific sits in
# other metadata keys (see market_data_assets/launchers/vm.py). On boot the guest agent runs it as root:
#   1. read the run's command, compressed ExecuteRunArgs, plain env and secret names from the metadata server;
#   2. fetch each secret (TARDIS_API_KEY, DAGSTER_PG_PASSWORD, ...) from Secret Manager with the VM's
#      service-account token -- secrets are never in metadata and never printed;
#   3. run `dagster api execute_run` (args in DAGSTER_COMPRESSED_EXECUTE_RUN_ARGS), which writes the
#      run's events and status to the Dagster instance (PostgreSQL) itself;
#   4. delete this VM through the Compute REST API when the run ends, whatever its outcome (trap EXIT).
#
# Requirements on the image: bash, curl, python3 and the project installed at the same paths as on the
# daemon VM (the command names the daemon's Python executable). Overrides used by tests and emulators:
# GCE_METADATA_HOST (metadata server host:port) and the metadata keys market-data-compute-api /
# market-data-secretmanager-api.
set -euo pipefail
set +x  # never trace: the environment holds secrets

MD_HOST="${GCE_METADATA_HOST:-metadata.google.internal}"
MD="http://${MD_HOST}/computeMetadata/v1"

md() { curl -fsS --retry 5 --retry-connrefused -H "Metadata-Flavor: Google" "${MD}/$1"; }
attr() { md "instance/attributes/$1"; }
attr_or() {
  local value
  if value="$(curl -fsS -H "Metadata-Flavor: Google" "${MD}/instance/attributes/$1" 2>/dev/null)"; then
    printf '%s' "$value"
  else
    printf '%s' "$2"
  fi
}
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
access_token() { md "instance/service-accounts/default/token" | json_field access_token; }
log() { echo "$(date -u +%FT%T.%3NZ) dagster-run-vm: $*" >&2; }

log "startup script begins"
VM_NAME="$(md instance/name)"
VM_ZONE="$(md instance/zone)"
VM_ZONE="${VM_ZONE##*/}"
VM_PROJECT="$(md project/project-id)"
COMPUTE_API="$(attr_or market-data-compute-api https://compute.googleapis.com/compute/v1)"
SECRETS_API="$(attr_or market-data-secretmanager-api https://secretmanager.googleapis.com/v1)"
DELETE_ON_EXIT="$(attr_or market-data-delete-vm-on-exit true)"
RUN_ID="$(attr dagster-run-id)"

delete_this_vm() {
  local status=$?
  log "run ${RUN_ID} worker exited with status ${status}"
  if [ "${DELETE_ON_EXIT}" = "true" ]; then
    log "deleting VM ${VM_NAME} in ${VM_ZONE}"
    curl -fsS -X DELETE -H "Authorization: Bearer $(access_token)" \
      "${COMPUTE_API}/projects/${VM_PROJECT}/zones/${VM_ZONE}/instances/${VM_NAME}" >/dev/null \
      || log "could not delete VM ${VM_NAME}; delete it by hand (gcloud compute instances delete ${VM_NAME} --zone ${VM_ZONE})"
  fi
}
trap delete_this_vm EXIT

# Plain environment: `export NAME='value'` lines written (POSIX-quoted) by the launcher.
RUN_ENV_FILE="$(mktemp)"
attr dagster-run-env >"${RUN_ENV_FILE}"
# shellcheck disable=SC1090
. "${RUN_ENV_FILE}"
rm -f "${RUN_ENV_FILE}"

# Secrets: `NAME projects/P/secrets/S/versions/V` lines; values come from Secret Manager only.
SECRET_LINES="$(attr_or dagster-secret-env "")"
if [ -n "${SECRET_LINES}" ]; then
  TOKEN="$(access_token)"
  while read -r name resource; do
    [ -n "${name}" ] || continue
    if ! [[ "${name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
      log "invalid secret variable name in metadata: ${name}"
      exit 2
    fi
    value="$(curl -fsS -H "Authorization: Bearer ${TOKEN}" "${SECRETS_API}/${resource}:access" \
      | python3 -c 'import base64, json, sys; sys.stdout.write(base64.b64decode(json.load(sys.stdin)["payload"]["data"]).decode())')" \
      || { log "could not read secret ${resource} for ${name}"; exit 2; }
    export "${name}=${value}"
  done <<<"${SECRET_LINES}"
  unset TOKEN value
fi

WORKDIR="$(attr_or dagster-run-workdir "")"
if [ -n "${WORKDIR}" ]; then cd "${WORKDIR}"; fi

DAGSTER_COMPRESSED_EXECUTE_RUN_ARGS="$(attr dagster-compressed-execute-run-args)"
export DAGSTER_COMPRESSED_EXECUTE_RUN_ARGS
# The command is a POSIX-quoted argv (shlex.join), e.g. /opt/venv/bin/python -m dagster api execute_run
eval "set -- $(attr dagster-execute-run-command)"
log "starting run ${RUN_ID}: $*"
"$@"
