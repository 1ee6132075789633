#!/usr/bin/env bash
# Schemathesis against the live server (tests/api/schemathesis.rs): installs Schemathesis in a
# virtual environment under target/, then runs the test on SQLite and, when
# CERTHUB_TEST_POSTGRES_URL answers, PostgreSQL. Reports: target/schemathesis/.
# CERTHUB_SCHEMATHESIS_SECONDS sets the seconds of traffic per identity (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
version="4.32.5"
venv="target/schemathesis/venv"
if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"
fi
export CERTHUB_SCHEMATHESIS="$PWD/$venv/bin/schemathesis"
"$CERTHUB_SCHEMATHESIS" --version
cargo test --test api schemathesis -- --ignored --nocapture </dev/null
