#!/usr/bin/env bash
# Cargo runner for x86_64-pc-windows-gnu (.cargo/config.toml): runs a Windows exe under Wine in
# a dedicated prefix, creating it and installing the ProcessPrng shim on first use.
# WINEPREFIX overrides the prefix (default: <target dir>/wine-prefix). Safe to start several at
# once: the set-up runs under a lock, and only once per prefix and shim version.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
export WINEPREFIX="${WINEPREFIX:-$target_dir/wine-prefix}"
export WINEDEBUG="${WINEDEBUG:--all}"
# No display in CI: keep Wine from asking to install Mono and Gecko while the prefix is made.
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree=;mshtml=}"

command -v wine >/dev/null 2>&1 || { echo "wine-runner: wine is not installed (apt-get install wine)" >&2; exit 127; }

shim_src="$repo/scripts/wine/processprng.c"
shim_def="$repo/scripts/wine/bcryptprimitives.def"
shim_version="$(cat "$shim_src" "$shim_def" | sha256sum | cut -d' ' -f1)"
ready="$WINEPREFIX/.certhub-ready"

set_up_prefix() {
  if [ ! -f "$WINEPREFIX/system.reg" ]; then
    echo "wine-runner: creating the Wine prefix $WINEPREFIX (once)" >&2
    wine wineboot --init >"$WINEPREFIX.boot.log" 2>&1 || true
    # First-boot services (RpcSs, needed by the Task Scheduler) must finish before any test.
    wineserver -w
    if [ ! -f "$WINEPREFIX/system.reg" ]; then
      echo "wine-runner: wineboot did not create the prefix; see $WINEPREFIX.boot.log" >&2
      exit 1
    fi
  fi
  local system32="$WINEPREFIX/drive_c/windows/system32"
  local build
  build="$(mktemp -d)"
  x86_64-w64-mingw32-gcc -O2 -shared -o "$build/bcryptprimitives.dll" "$shim_src" "$shim_def" -ladvapi32
  cp "$build/bcryptprimitives.dll" "$system32/bcryptprimitives.dll"
  rm -rf "$build"
  echo "$shim_version" > "$ready"
}

if [ "$(cat "$ready" 2>/dev/null)" != "$shim_version" ]; then
  mkdir -p "$(dirname "$WINEPREFIX")"
  exec 9>"$WINEPREFIX.lock"
  flock 9
  # Another runner may have finished the set-up while this one waited for the lock.
  if [ "$(cat "$ready" 2>/dev/null)" != "$shim_version" ]; then
    set_up_prefix
  fi
  flock -u 9
  exec 9>&-
fi

exec wine "$@"
