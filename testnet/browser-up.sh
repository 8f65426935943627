#!/usr/bin/env bash
# testnet/browser-up.sh — install Debian's chromium for the web page's browser
# tests (agent/web), as root. Idempotent: does nothing when chromium is there.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
	echo "chromium present: $(chromium --version 2>/dev/null || echo unknown version)"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "browser-up.sh: chromium is missing and installing it needs root (apt-get install chromium)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "installed $(chromium --version 2>/dev/null || echo chromium)"
