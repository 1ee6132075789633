#!/usr/bin/env bash
# The seed's stack for `cargo bench --bench heartbeats`: wrk and a Python environment with
# FastAPI, uvicorn, SQLAlchemy, psycopg2 and PyJWT in /tmp/seedstack (or $1).
set -euo pipefail
venv="${1:-/tmp/seedstack}"
if ! command -v wrk >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if [ ! -x "$venv/bin/uvicorn" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q fastapi uvicorn sqlalchemy psycopg2-binary pyjwt uvloop httptools
fi
echo "seed stack ready: $venv (wrk $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f2))"
