#!/bin/sh
# Make sure the browser test can run: Debian's chromium and chromium-driver (the same version, so Selenium
# needs no download), installed as root with apt. Elsewhere this says what is missing and lets `make` go on:
# the browser test then skips with the reason.
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium and chromium-driver for the browser test" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null \
        && exit 0
fi
echo "note: chromium and chromium-driver are not installed (apt-get install chromium chromium-driver as root);" \
    "tests/test_serve_browser.py will be skipped" >&2
exit 0
