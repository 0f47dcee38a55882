#!/usr/bin/env bash
# Headless Chromium for the docs site's browser check (tests/test_docs_site.py): Debian's
# `chromium` package. Other jobs may hold the dpkg lock: wait for it rather than fail.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-chromium.sh: chromium is missing and this is not root; install Debian's chromium package" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends chromium ||
    { apt-get -o DPkg::Lock::Timeout=300 update && apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends chromium; }
