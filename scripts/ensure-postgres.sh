#!/bin/sh
# Make sure the PostgreSQL study test can run: Debian's postgresql (initdb and postgres under
# /usr/lib/postgresql/VERSION/bin; the test starts its own throw-away server), installed as root with apt.
# Elsewhere this says what is missing and lets `make` go on: tests/test_tune_postgres.py then skips with the reason.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && exit 0
command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's postgresql for the tuning study test" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null && exit 0
fi
echo "note: PostgreSQL is not installed (apt-get install postgresql as root);" \
    "tests/test_tune_postgres.py will be skipped" >&2
exit 0
