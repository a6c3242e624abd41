#!/usr/bin/env bash
# Startup script of the orchestrator VM (dagster-webserver + dagster-daemon), set by deploy_vms.sh.
# Runs on every boot: writes the environment files and (re)starts both services under systemd.
# Non-secret settings come from the metadata key `market-data-env`; secrets from Secret Manager.
set -euo pipefail
set +x

MD="http://metadata.google.internal/computeMetadata/v1"
md() { curl -fsS -H "Metadata-Flavor: Google" "${MD}/$1"; }
PROJECT="$(md project/project-id)"
TOKEN="$(md instance/service-accounts/default/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
secret() {
  curl -fsS -H "Authorization: Bearer ${TOKEN}" \
    "https://secretmanager.googleapis.com/v1/projects/${PROJECT}/secrets/$1/versions/latest:access" \
    | python3 -c 'import base64,json,sys; sys.stdout.write(base64.b64decode(json.load(sys.stdin)["payload"]["data"]).decode())'
}

install -d -m 0755 /etc/market-data
md instance/attributes/market-data-env >/etc/market-data/dagster.env
chmod 0644 /etc/market-data/dagster.env
umask 077
{
  printf 'DAGSTER_PG_PASSWORD=%s\n' "$(secret dagster-pg-password)"
  printf 'TARDIS_API_KEY=%s\n' "$(secret tardis-api-key)"
} >/etc/market-data/secrets.env
umask 022
unset TOKEN

APP=/opt/market_data_assets
export DAGSTER_HOME=/opt/dagster/dagster_home
install -d "${DAGSTER_HOME}"
cp "${APP}/deploy/dagster.yaml" "${DAGSTER_HOME}/dagster.yaml"

for unit in webserver daemon; do
  if [ "${unit}" = webserver ]; then
    cmd="${APP}/.venv/bin/dagster-webserver -w ${APP}/workspace.yaml -h 127.0.0.1 -p 3000"
  else
    cmd="${APP}/.venv/bin/dagster-daemon run -w ${APP}/workspace.yaml"
  fi
  cat >"/etc/systemd/system/dagster-${unit}.service" <<UNIT
[Unit]
Description=Dagster ${unit} (market_data_assets)
After=network-online.target
Wants=network-online.target

[Service]
Environment=DAGSTER_HOME=${DAGSTER_HOME}
Environment=PATH=${APP}/.venv/bin:/usr/local/bin:/usr/bin:/bin
EnvironmentFile=/etc/market-data/dagster.env
EnvironmentFile=/etc/market-data/secrets.env
WorkingDirectory=${APP}
ExecStart=${cmd}
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
done
systemctl daemon-reload
systemctl enable --now dagster-webserver.service dagster-daemon.service
systemctl restart dagster-webserver.service dagster-daemon.service
