#!/usr/bin/env bash
# One small always-on VM for the live streamers: tardis-machine + one market-data-live@EXCHANGE unit
# per exchange, running as the VM's service account (writes gs://$LAKE_BUCKET and the BigQuery
# dataset through the Storage Write API, see docs/LIVE.md). Not a Dagster run.
#   PROJECT=p ZONE=europe-west1-b LAKE_BUCKET=b LIVE_EXCHANGES="binance-futures:BTCUSDT,ETHUSDT" deploy/live/deploy_live_vm.sh
# BQ_DATASET (default market_data_analytics) is the dataset the batch loads; LIVE_ARGS=--no-warehouse
# writes the lake only.
set -euo pipefail
: "${PROJECT:?}" "${ZONE:?}" "${LAKE_BUCKET:?}" "${LIVE_EXCHANGES:?exchange:SYMBOLS pairs, space-separated}"
VM=${LIVE_VM:-market-data-live}
SA=${LIVE_SA:-market-data-live@${PROJECT}.iam.gserviceaccount.com}
IMAGE_FAMILY=${IMAGE_FAMILY:-market-data-run}
HERE=$(cd "$(dirname "$0")" && pwd)

gcloud iam service-accounts describe "$SA" --project "$PROJECT" >/dev/null 2>&1 ||
  gcloud iam service-accounts create "${SA%%@*}" --project "$PROJECT" --display-name "market-data live streamer"
gcloud storage buckets add-iam-policy-binding "gs://$LAKE_BUCKET" --member "serviceAccount:$SA" \
  --role roles/storage.objectAdmin >/dev/null
gcloud projects add-iam-policy-binding "$PROJECT" --member "serviceAccount:$SA" \
  --role roles/bigquery.dataEditor --condition=None >/dev/null
# query jobs: a restarted streamer asks the tables which buckets they already hold
gcloud projects add-iam-policy-binding "$PROJECT" --member "serviceAccount:$SA" \
  --role roles/bigquery.jobUser --condition=None >/dev/null

startup=$(mktemp)
{
  echo '#!/usr/bin/env bash'
  echo 'set -euo pipefail'
  echo 'apt-get update -qq && apt-get install -y -qq docker.io >/dev/null'
  echo 'id market-data >/dev/null 2>&1 || useradd --system market-data'
  echo 'mkdir -p /etc/market-data'
  echo "cat > /etc/market-data/live.env <<'ENV'"
  echo "MARKET_DATA_ROOT=gs://$LAKE_BUCKET/lake"
  echo "TARDIS_MACHINE_WS_URL=ws://127.0.0.1:8001"
  echo "MARKET_DATA_WAREHOUSE=bigquery://$PROJECT/${BQ_DATASET:-market_data_analytics}"
  echo "LIVE_ARGS=${LIVE_ARGS:-}"
  echo "ENV"
  port=8002
  for pair in $LIVE_EXCHANGES; do
    exchange=${pair%%:*}
    symbols=${pair#*:}
    echo "printf 'SYMBOLS=%s\nHEALTH_PORT=%s\n' '$symbols' '$port' > /etc/market-data/live-$exchange.env"
    port=$((port + 1))
  done
  echo "cat > /etc/systemd/system/tardis-machine.service <<'UNIT'"
  cat "$HERE/tardis-machine.service"
  echo "UNIT"
  echo "cat > /etc/systemd/system/market-data-live@.service <<'UNIT'"
  cat "$HERE/market-data-live@.service"
  echo "UNIT"
  echo 'systemctl daemon-reload && systemctl enable --now tardis-machine.service'
  for pair in $LIVE_EXCHANGES; do
    echo "systemctl enable --now market-data-live@${pair%%:*}.service"
  done
} >"$startup"

gcloud compute instances create "$VM" --project "$PROJECT" --zone "$ZONE" --machine-type e2-standard-2 \
  --image-family "$IMAGE_FAMILY" --image-project "$PROJECT" --no-address --service-account "$SA" \
  --scopes cloud-platform --metadata-from-file startup-script="$startup"
rm -f "$startup"
echo "live VM $VM created; health: gcloud compute ssh $VM --tunnel-through-iap -- curl -s 127.0.0.1:8002/healthz"
