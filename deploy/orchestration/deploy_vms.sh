#!/usr/bin/env bash
# From an empty GCP project to a running orchestrator (dagster-webserver + dagster-daemon) that
# launches one VM per run. Idempotent where gcloud allows (re-running skips what exists).
# Read deploy/README.md first; run from the repository root with gcloud authenticated as a project owner.
#
#   PROJECT=my-proj REGION=europe-west1 ZONE=europe-west1-b LAKE_BUCKET=my-proj-market-data \
#     deploy/orchestration/deploy_vms.sh
set -euo pipefail

: "${PROJECT:?set PROJECT}"
: "${REGION:?set REGION (e.g. europe-west1)}"
: "${ZONE:?set ZONE (e.g. europe-west1-b)}"
: "${LAKE_BUCKET:?set LAKE_BUCKET (bucket name for the Parquet lake)}"
LOG_BUCKET="${LOG_BUCKET:-${PROJECT}-dagster-logs}"
BQ_DATASET="${BQ_DATASET:-market_data_analytics}"
SQL_INSTANCE="${SQL_INSTANCE:-dagster-pg}"
ORCH_VM="${ORCH_VM:-dagster-orchestrator}"
ORCH_SA="dagster-orchestrator@${PROJECT}.iam.gserviceaccount.com"
RUN_SA="dagster-run@${PROJECT}.iam.gserviceaccount.com"
IMAGE="projects/${PROJECT}/global/images/family/${IMAGE_FAMILY:-market-data-run}"
EXCHANGES="${MARKET_DATA_EXCHANGES:-binance,binance-futures,deribit,bitmex,coinbase}"
START_DATE="${MARKET_DATA_START_DATE:-2024-01-01}"
g() { gcloud --project "${PROJECT}" --quiet "$@"; }
exists() { "$@" >/dev/null 2>&1; }

echo "== APIs"
g services enable compute.googleapis.com secretmanager.googleapis.com sqladmin.googleapis.com \
  servicenetworking.googleapis.com bigquery.googleapis.com storage.googleapis.com iap.googleapis.com

echo "== network egress without public IPs (Tardis is on the internet): Cloud Router + NAT"
exists g compute routers describe market-data-router --region "${REGION}" \
  || g compute routers create market-data-router --network default --region "${REGION}"
exists g compute routers nats describe market-data-nat --router market-data-router --region "${REGION}" \
  || g compute routers nats create market-data-nat --router market-data-router --region "${REGION}" \
    --auto-allocate-nat-external-ips --nat-all-subnet-ip-ranges
exists g compute firewall-rules describe allow-iap-ssh-3000 \
  || g compute firewall-rules create allow-iap-ssh-3000 --network default --direction INGRESS \
    --source-ranges 35.235.240.0/20 --allow tcp:22,tcp:3000

echo "== service accounts"
for sa in dagster-orchestrator dagster-run; do
  exists g iam service-accounts describe "${sa}@${PROJECT}.iam.gserviceaccount.com" \
    || g iam service-accounts create "${sa}" --display-name "${sa}"
done
# Orchestrator: creates/deletes run VMs that act as dagster-run, reads the DB and logs.
for role in roles/compute.instanceAdmin.v1 roles/cloudsql.client roles/secretmanager.secretAccessor \
  roles/storage.objectViewer; do
  g projects add-iam-policy-binding "${PROJECT}" --member "serviceAccount:${ORCH_SA}" --role "${role}" >/dev/null
done
g iam service-accounts add-iam-policy-binding "${RUN_SA}" --member "serviceAccount:${ORCH_SA}" \
  --role roles/iam.serviceAccountUser >/dev/null
# Run VMs: write the lake and logs, load BigQuery, read their secrets, reach the DB, delete themselves.
# (compute.instanceAdmin.v1 is broad; a custom role with compute.instances.delete/get is enough.)
for role in roles/cloudsql.client roles/secretmanager.secretAccessor roles/bigquery.dataEditor \
  roles/bigquery.jobUser roles/compute.instanceAdmin.v1; do
  g projects add-iam-policy-binding "${PROJECT}" --member "serviceAccount:${RUN_SA}" --role "${role}" >/dev/null
done

echo "== buckets and dataset"
for bucket in "${LAKE_BUCKET}" "${LOG_BUCKET}"; do
  exists g storage buckets describe "gs://${bucket}" \
    || g storage buckets create "gs://${bucket}" --location "${REGION}" --uniform-bucket-level-access
  g storage buckets add-iam-policy-binding "gs://${bucket}" --member "serviceAccount:${RUN_SA}" \
    --role roles/storage.objectAdmin >/dev/null
done
exists bq --project_id "${PROJECT}" show "${PROJECT}:${BQ_DATASET}" \
  || bq --project_id "${PROJECT}" mk --location "${REGION}" --dataset "${PROJECT}:${BQ_DATASET}"

echo "== secrets (values read from your terminal, never from files or arguments)"
if ! exists g secrets describe tardis-api-key; then
  read -r -s -p "Tardis API key: " TARDIS_KEY && echo
  printf '%s' "${TARDIS_KEY}" | g secrets create tardis-api-key --data-file=-
  unset TARDIS_KEY
fi
if ! exists g secrets describe dagster-pg-password; then
  python3 -c 'import secrets; print(secrets.token_urlsafe(32), end="")' | g secrets create dagster-pg-password --data-file=-
fi

echo "== Cloud SQL for PostgreSQL (private IP)"
if ! exists g sql instances describe "${SQL_INSTANCE}"; then
  exists g compute addresses describe google-managed-services-default --global \
    || g compute addresses create google-managed-services-default --global --purpose VPC_PEERING \
      --prefix-length 16 --network default
  g services vpc-peerings connect --service servicenetworking.googleapis.com \
    --ranges google-managed-services-default --network default || true
  g sql instances create "${SQL_INSTANCE}" --database-version POSTGRES_16 --region "${REGION}" \
    --tier db-custom-2-7680 --network default --no-assign-ip --storage-auto-increase
  g sql databases create dagster --instance "${SQL_INSTANCE}"
  g sql users create dagster --instance "${SQL_INSTANCE}" \
    --password "$(g secrets versions access latest --secret dagster-pg-password)"
fi
PG_HOST="$(g sql instances describe "${SQL_INSTANCE}" --format 'value(ipAddresses[0].ipAddress)')"

echo "== the run image (skip with SKIP_IMAGE=1 if the family is current)"
if [ "${SKIP_IMAGE:-0}" != 1 ]; then PROJECT="${PROJECT}" ZONE="${ZONE}" deploy/vm/build_image.sh; fi

echo "== orchestrator VM"
ENV_FILE="$(mktemp)"
cat >"${ENV_FILE}" <<ENV
DAGSTER_PG_HOST=${PG_HOST}
DAGSTER_PG_USERNAME=dagster
DAGSTER_PG_DB=dagster
DAGSTER_COMPUTE_LOG_BUCKET=${LOG_BUCKET}
GCP_PROJECT=${PROJECT}
MARKET_DATA_RUN_ZONE=${ZONE}
MARKET_DATA_RUN_IMAGE=${IMAGE}
MARKET_DATA_RUN_SERVICE_ACCOUNT=${RUN_SA}
MARKET_DATA_ROOT=gs://${LAKE_BUCKET}/lake
MARKET_DATA_WAREHOUSE=bigquery://${PROJECT}/${BQ_DATASET}
MARKET_DATA_EXCHANGES=${EXCHANGES}
MARKET_DATA_START_DATE=${START_DATE}
ENV
if exists g compute instances describe "${ORCH_VM}" --zone "${ZONE}"; then
  g compute instances add-metadata "${ORCH_VM}" --zone "${ZONE}" \
    --metadata-from-file "market-data-env=${ENV_FILE},startup-script=deploy/orchestration/orchestrator_startup.sh"
  g compute instances reset "${ORCH_VM}" --zone "${ZONE}"
else
  g compute instances create "${ORCH_VM}" --zone "${ZONE}" --machine-type e2-standard-4 \
    --image "${IMAGE}" --boot-disk-size 50GB --no-address --shielded-secure-boot \
    --service-account "${ORCH_SA}" --scopes cloud-platform --labels app=market-data,role=orchestrator \
    --metadata-from-file "market-data-env=${ENV_FILE},startup-script=deploy/orchestration/orchestrator_startup.sh"
fi
rm -f "${ENV_FILE}"

echo "== done. Open the UI through IAP:"
echo "   gcloud compute ssh ${ORCH_VM} --project ${PROJECT} --zone ${ZONE} --tunnel-through-iap -- -L 3000:127.0.0.1:3000"
echo "   then browse http://127.0.0.1:3000"
