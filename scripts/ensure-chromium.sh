#!/bin/sh
# Headless Chromium for the HTML report's screenshot test (tests/test_report.py).
# Installs Debian's `chromium` when it is missing and apt can be used (root, as in CI);
# otherwise does nothing, and the test skips saying why.
set -u
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: no apt-get here; the HTML screenshot test will be skipped" >&2
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: not root, cannot install chromium; the HTML screenshot test will be skipped" >&2
    exit 0
fi
echo "ensure-chromium: installing Debian's chromium (once)" >&2
if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
        || { apt-get update >/dev/null 2>&1 \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; }; }; then
    echo "ensure-chromium: apt-get could not install chromium; the HTML screenshot test will be skipped" >&2
fi
exit 0
