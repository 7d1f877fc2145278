#!/usr/bin/env bash
# Installs the Debian packages cityops needs on a fresh machine, only those missing:
# a JDK and Maven (to fetch and run Apache Kafka), kcat (to read records by hand and in tests),
# PostgreSQL (the production store, used by the storage tests), Node.js and npm (the official
# AsyncAPI parser in tools/asyncapi-check checks the AsyncAPI document; the console's htmx and ECharts are npm
# packages too), Chromium and the Noto CJK fonts (the console's browser tests, screenshots that show Chinese).
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || missing+=(fonts-noto-cjk)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
