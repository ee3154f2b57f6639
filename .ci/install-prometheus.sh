#!/usr/bin/env bash
# Installs `promtool` and `prometheus` from the Debian package `prometheus`, for tests/observability.
# Idempotent: does nothing when both are already on PATH. Only the binaries are wanted, so the
# package's service is kept from starting (and stopped if a running systemd started it anyway):
# nothing is left listening on :9090.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    echo "prometheus: already installed ($(prometheus --version 2>&1 | head -n 1))"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

# invoke-rc.d and deb-systemd-invoke ask policy-rc.d before starting a service; 101 means "no".
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    created_policy=1
fi
remove_policy() {
    if [ -n "$created_policy" ]; then
        $sudo rm -f "$policy"
    fi
}
trap remove_policy EXIT

$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi

command -v promtool >/dev/null
echo "prometheus: installed ($(prometheus --version 2>&1 | head -n 1))"
