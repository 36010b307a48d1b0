#!/usr/bin/env bash
# TorchServe's frontend is a Java 17+ program: fail early, with the fix, when Java is missing.
set -euo pipefail
if ! command -v java >/dev/null 2>&1; then
  echo "Java 17 or newer is required by TorchServe and was not found on PATH." >&2
  echo "Install it (Debian/Ubuntu): sudo apt-get install -y openjdk-17-jre-headless" >&2
  echo "macOS: brew install openjdk@17   Others: https://adoptium.net" >&2
  exit 1
fi
version=$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
major=${version%%.*}
[ "$major" = "1" ] && major=$(echo "$version" | cut -d. -f2)
if [ -z "$major" ] || [ "$major" -lt 17 ] 2>/dev/null; then
  echo "Java $version found; TorchServe 0.12 needs Java 17 or newer." >&2
  echo "Install it (Debian/Ubuntu): sudo apt-get install -y openjdk-17-jre-headless" >&2
  exit 1
fi
