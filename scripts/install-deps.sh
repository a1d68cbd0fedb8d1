#!/usr/bin/env bash
# Installs the Debian packages allma needs to build, run and test, if any is
# missing.  Runs apt-get only when something is missing (and as root).
set -euo pipefail

PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron
          libcurl4-openssl-dev libipc-run-perl make gcc python3
          # t/075_pictures.pl renders graphs and opens timelines
          graphviz chromium
          # t/076_package.pl builds the Debian package
          debhelper dpkg-dev fakeroot postgresql-server-dev-all
          # t/068_sanitized_fuzz.pl: gcc's UBSan runtime (make SANITIZE=1),
          # ASan's for SANITIZE=address
          libubsan1 libasan8)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "allma: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Debian's postgresql-common creates a "main" cluster on install; we never use it.
if [ ! -e /etc/postgresql-common/createcluster.conf ] || ! grep -q '^create_main_cluster *= *false' /etc/postgresql-common/createcluster.conf 2>/dev/null; then
  $SUDO mkdir -p /etc/postgresql-common
  echo 'create_main_cluster = false' | $SUDO tee -a /etc/postgresql-common/createcluster.conf >/dev/null
fi
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
