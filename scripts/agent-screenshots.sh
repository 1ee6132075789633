#!/usr/bin/env bash
# Screenshots of the Windows agent's tray menu, Status window and pairing dialog, drawn by Wine
# on a private Xvfb server: target/agent-screenshots/{tray-menu,status,pair}.png, plus
# pair-error.png (the dialog refusing a form) and balloon.png ("... instalado até 18:00").
#
# Needs (installs nothing): Xvfb (Debian `xvfb`), import and convert (Debian `imagemagick`),
# wine and the x86_64-pc-windows-gnu target (see scripts/wine-runner.sh). Uses the same Wine
# prefix as the tests' runner. Exits non-zero when a screenshot is missing or blank.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
out="$target_dir/agent-screenshots"
runner="$repo/scripts/wine-runner.sh"
export WINEPREFIX="${WINEPREFIX:-$target_dir/wine-prefix}"
export WINEDEBUG="${WINEDEBUG:--all}"
# Seconds to wait after the screen says READY before the capture (Wine draws asynchronously).
settle="${SETTLE_SECONDS:-3}"

missing=()
for tool in Xvfb import convert wine wineserver; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "agent-screenshots: missing ${missing[*]} (apt-get install xvfb imagemagick wine)" >&2
  exit 127
fi

echo "agent-screenshots: building the example for Windows" >&2
cargo build --no-default-features --features agent --target x86_64-pc-windows-gnu \
  --example tray_screens
exe="$target_dir/x86_64-pc-windows-gnu/debug/examples/tray_screens.exe"
[ -f "$exe" ] || { echo "agent-screenshots: $exe was not built" >&2; exit 1; }

# The runner makes the prefix and its ProcessPrng shim on first use; a no-op run does that now.
"$runner" cmd /c exit 0 >/dev/null 2>&1 || true
# A Wine server of this prefix started without a display (a test run) would keep its desktop
# headless: wait until it has gone.
timeout 60 wineserver -w || true

# A free display number, and a black screen (so that "nothing drawn" is a blank image).
display_number=""
for n in $(seq 90 140); do
  if [ ! -e "/tmp/.X$n-lock" ] && [ ! -e "/tmp/.X11-unix/X$n" ]; then
    display_number=$n
    break
  fi
done
[ -n "$display_number" ] || { echo "agent-screenshots: no free X display" >&2; exit 1; }
export DISPLAY=":$display_number"
Xvfb "$DISPLAY" -screen 0 800x600x24 -br -nolisten tcp >/dev/null 2>&1 &
xvfb_pid=$!
app_pid=""
cleanup() {
  if [ -n "$app_pid" ]; then kill "$app_pid" 2>/dev/null || true; fi
  timeout 30 wineserver -w 2>/dev/null || true
  kill "$xvfb_pid" 2>/dev/null || true
  wait "$xvfb_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do
  [ -e "/tmp/.X11-unix/X$display_number" ] && break
  sleep 0.2
done
[ -e "/tmp/.X11-unix/X$display_number" ] || { echo "agent-screenshots: Xvfb did not start" >&2; exit 1; }

mkdir -p "$out"
failed=0

# shot SCREEN FILE: runs `tray_screens SCREEN`, waits for READY, captures, ends it.
shot() {
  local screen=$1 file="$out/$2" log="$out/$1.log"
  rm -f "$file"
  "$runner" "$exe" "$screen" 120 >"$log" 2>&1 &
  app_pid=$!
  local ready=""
  for _ in $(seq 150); do
    if grep -q "READY $screen" "$log" 2>/dev/null; then ready=1; break; fi
    if ! kill -0 "$app_pid" 2>/dev/null; then break; fi
    sleep 0.2
  done
  if [ -z "$ready" ]; then
    echo "agent-screenshots: $screen never got ready; its output:" >&2
    cat "$log" >&2
  else
    sleep "$settle"
    import -display "$DISPLAY" -window root "$file"
  fi
  kill "$app_pid" 2>/dev/null || true
  wait "$app_pid" 2>/dev/null || true
  app_pid=""
  # Let Wine tear the process (and its tray icon) down before the next screen.
  timeout 30 wineserver -w || true

  if [ ! -s "$file" ]; then
    echo "agent-screenshots: $file is missing" >&2
    failed=1
    return
  fi
  local deviation
  deviation=$(convert "$file" -format '%[fx:standard_deviation]' info:)
  if awk -v d="$deviation" 'BEGIN { exit !(d < 0.01) }'; then
    echo "agent-screenshots: $file is blank (standard deviation $deviation)" >&2
    failed=1
    return
  fi
  echo "agent-screenshots: $file (standard deviation $deviation)"
}

shot menu tray-menu.png
shot status status.png
shot pair pair.png
shot pair-error pair-error.png
shot balloon balloon.png

exit "$failed"
