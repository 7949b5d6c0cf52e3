#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test (server/tests/browser.rs)
# when /usr/bin/chromium is missing. Idempotent, and silent when it is
# already there. Playwright's own browser download cannot work here, so the
# test drives this Chromium through playwright-core.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
else
    sudo=(sudo -n)
fi
echo "setup.sh: installing Debian's chromium" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y -q chromium >/dev/null; then
    # A fresh machine may have no package lists yet.
    "${sudo[@]}" apt-get update -q >/dev/null
    "${sudo[@]}" apt-get install -y -q chromium >/dev/null
fi
if [ ! -x /usr/bin/chromium ]; then
    echo "setup.sh: apt-get finished but /usr/bin/chromium is still missing" >&2
    exit 1
fi
