#!/usr/bin/env bash
# Build the Compute Engine image every Dagster run VM (and the orchestrator VM) boots from.
#
# The image holds the project at /opt/market_data_assets with its virtualenv at .venv -- the SAME paths
# as on the orchestrator, because the run command and code pointer GceRunLauncher ships are the
# orchestrator's (`dagster` on PATH, module market_data_assets.definitions, workdir /opt/market_data_assets).
# Rebuild the image on every release and keep the orchestrator on the same release.
#
# Usage: PROJECT=my-proj ZONE=europe-west1-b deploy/vm/build_image.sh [GIT_REF]
set -euo pipefail

: "${PROJECT:?set PROJECT}"
: "${ZONE:?set ZONE (e.g. europe-west1-b)}"
REF="${1:-$(git rev-parse --short HEAD)}"
FAMILY="${IMAGE_FAMILY:-market-data-run}"
BUILDER="market-data-image-builder-$(date +%s)"
REPO_ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SDIST_DIR="$(mktemp -d)"

# 1. Package this checkout (what is deployed is exactly what is committed at REF).
git -C "${REPO_ROOT}" archive --format=tar.gz --prefix=market_data_assets/ -o "${SDIST_DIR}/src.tar.gz" "${REF}"

# 2. A throwaway builder VM with the stock Debian 12 image.
gcloud compute instances create "${BUILDER}" --project "${PROJECT}" --zone "${ZONE}" \
  --machine-type e2-standard-2 --image-family debian-12 --image-project debian-cloud \
  --boot-disk-size 30GB --scopes cloud-platform --no-address --shielded-secure-boot

gcloud compute ssh "${BUILDER}" --project "${PROJECT}" --zone "${ZONE}" --tunnel-through-iap \
  --command 'sudo mkdir -p /opt && sudo chown "$USER" /opt'
gcloud compute scp "${SDIST_DIR}/src.tar.gz" "${BUILDER}:/tmp/src.tar.gz" \
  --project "${PROJECT}" --zone "${ZONE}" --tunnel-through-iap

# 3. Install: Python 3.11 venv, the project with the deploy extra (dagster-postgres), curl for the
#    startup script. The startup script itself comes from VM metadata at run time, not from the image.
gcloud compute ssh "${BUILDER}" --project "${PROJECT}" --zone "${ZONE}" --tunnel-through-iap --command '
  set -euo pipefail
  sudo apt-get update -q
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv python3-pip curl ca-certificates
  sudo tar -xzf /tmp/src.tar.gz -C /opt
  sudo python3 -m venv /opt/market_data_assets/.venv
  sudo /opt/market_data_assets/.venv/bin/pip install -q --upgrade pip
  sudo /opt/market_data_assets/.venv/bin/pip install -q -e "/opt/market_data_assets[deploy]"
  sudo mkdir -p /opt/dagster/dagster_home
  sudo cp /opt/market_data_assets/deploy/dagster.yaml /opt/dagster/dagster_home/dagster.yaml
  /opt/market_data_assets/.venv/bin/dagster --version
'

# 4. Image from the stopped builder's disk, then remove the builder.
gcloud compute instances stop "${BUILDER}" --project "${PROJECT}" --zone "${ZONE}"
gcloud compute images create "market-data-run-${REF//[^a-z0-9-]/-}-$(date +%Y%m%d%H%M)" --project "${PROJECT}" \
  --source-disk "${BUILDER}" --source-disk-zone "${ZONE}" --family "${FAMILY}" \
  --labels "app=market-data,git-ref=${REF//[^a-z0-9_-]/-}"
gcloud compute instances delete "${BUILDER}" --project "${PROJECT}" --zone "${ZONE}" --quiet
rm -rf "${SDIST_DIR}"
echo "image family ${FAMILY} updated: set MARKET_DATA_RUN_IMAGE=projects/${PROJECT}/global/images/family/${FAMILY}"
