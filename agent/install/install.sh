#!/bin/sh
# Installs the p2pev agent on Raspberry Pi OS (arm64, armhf) or Debian, as a systemd service.
#
#   sudo agent/install/install.sh              install from this checkout
#   agent/install/install.sh --root DIR        dry run: write every file under DIR, print the
#                                              system commands (useradd, systemctl …) instead
#
# What it does: copies the package to /opt/p2pev and installs its production dependencies
# (npm ci, npm run build, then npm prune --omit=dev), creates the system user p2pev (group dialout, for the RS-485 adapter),
# the config skeleton /etc/p2pev/agent.config.json (never overwrites one), the udev rule that
# names the adapter /dev/p2pev-meter, journald size limits, and the systemd unit p2pev.service
# (enabled, not started: the config and the key come first; see docs/INSTALL.md).
set -eu

ROOT=""
DRY=0
SKIP_NPM=0
usage() {
  cat <<USAGE
usage: install.sh [--root DIR] [--skip-npm]
  --root DIR   install into DIR instead of / (a dry run: system commands are printed, not run)
  --skip-npm   do not run npm ci in /opt/p2pev (dependencies installed some other way)
USAGE
}
while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || { echo "install.sh: --root needs a directory" >&2; exit 2; }
            ROOT=$(cd "$2" 2>/dev/null && pwd) || { echo "install.sh: $2 is not a directory" >&2; exit 2; }
            DRY=1; shift 2 ;;
    --skip-npm) SKIP_NPM=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
PREFIX="$ROOT/opt/p2pev"
ETC="$ROOT/etc/p2pev"
STATE="$ROOT/var/lib/p2pev"

say() { echo "install: $*"; }
# System commands: run them for real, or print them in a dry run.
run() {
  if [ "$DRY" = 1 ]; then echo "would run: $*"; else "$@"; fi
}
die() { echo "install.sh: $*" >&2; exit 1; }

if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo $0), or try a dry run with --root DIR"
fi
if [ ! -f "$SRC/package.json" ] || [ ! -f "$SRC/bin/p2pev.mjs" ]; then
  die "$SRC does not look like a p2pev checkout"
fi

NODE=$(command -v node || true)
[ -n "$NODE" ] || die "node is not installed: install Node.js 20.19 or newer first (docs/INSTALL.md)"
# 20.19: the noble cryptography packages need it (their package.json engines).
NODE_OK=$("$NODE" -p 'const [a, b] = process.versions.node.split(".").map(Number); a > 20 || (a === 20 && b >= 19) ? 1 : 0')
[ "$NODE_OK" = 1 ] || die "node $("$NODE" --version) is too old: p2pev needs Node.js 20.19 or newer (docs/INSTALL.md)"
if command -v dpkg >/dev/null 2>&1; then
  ARCH=$(dpkg --print-architecture)
  case "$ARCH" in
    arm64|armhf|amd64) say "architecture $ARCH" ;;
    *) say "warning: architecture $ARCH is untested (arm64, armhf and amd64 are)" ;;
  esac
fi

say "copying the package to $PREFIX"
mkdir -p "$PREFIX"
for item in package.json package-lock.json tsconfig.json tsconfig.build.json .ci bin agent contracts drivers protocol sim docs README.md; do
  [ -e "$SRC/$item" ] || continue
  rm -rf "${PREFIX:?}/$item"
  cp -R "$SRC/$item" "$PREFIX/$item"
done
if [ "$SKIP_NPM" = 0 ]; then
  # Compile once here (the service runs the JavaScript: P2PEV_DIST=1), then drop the build tools.
  run npm ci --no-audit --no-fund --prefix "$PREFIX"
  run npm run build --prefix "$PREFIX"
  run npm prune --omit=dev --no-audit --no-fund --prefix "$PREFIX"
fi

say "system user p2pev (groups: dialout)"
if [ "$DRY" = 1 ] || ! id p2pev >/dev/null 2>&1; then
  run useradd --system --home-dir /var/lib/p2pev --no-create-home --shell /usr/sbin/nologin --groups dialout p2pev
else
  run usermod --append --groups dialout p2pev
fi

say "directories $ETC (root:p2pev 0750) and $STATE (p2pev 0700)"
mkdir -p "$ETC" "$STATE"
chmod 0750 "$ETC"
chmod 0700 "$STATE"
run chown root:p2pev "$ETC"
run chown p2pev:p2pev "$STATE"

if [ -e "$ETC/agent.config.json" ]; then
  say "keeping the existing $ETC/agent.config.json"
else
  say "config skeleton $ETC/agent.config.json (edit it: docs/INSTALL.md)"
  install -m 0640 "$HERE/agent.config.json" "$ETC/agent.config.json"
  run chown root:p2pev "$ETC/agent.config.json"
fi

say "udev rule: the RS-485 adapter as /dev/p2pev-meter"
install -D -m 0644 "$HERE/99-p2pev-rs485.rules" "$ROOT/etc/udev/rules.d/99-p2pev-rs485.rules"
run udevadm control --reload-rules
run udevadm trigger --subsystem-match=tty

say "journald limits for the SD card"
install -D -m 0644 "$HERE/journald-p2pev.conf" "$ROOT/etc/systemd/journald.conf.d/p2pev.conf"
run systemctl restart systemd-journald

say "systemd unit p2pev.service (node: $NODE)"
mkdir -p "$ROOT/etc/systemd/system"
sed "s|@NODE@|$NODE|g" "$HERE/p2pev.service" >"$ROOT/etc/systemd/system/p2pev.service"
chmod 0644 "$ROOT/etc/systemd/system/p2pev.service"
mkdir -p "$ROOT/usr/local/bin"
ln -sf /opt/p2pev/bin/p2pev.mjs "$ROOT/usr/local/bin/p2pev"
run systemctl daemon-reload
# time-sync.target then waits for NTP: the agent starts with the right time.
run systemctl enable systemd-time-wait-sync.service
run systemctl enable p2pev.service

cat <<NEXT
install: done. Next (docs/INSTALL.md):
  1. the device key:   sudo sh -c 'umask 077; head -c 24 /dev/urandom | base64 > /etc/p2pev/key.password'
                       sudo p2pev keys new --keystore /etc/p2pev/key.json --password-file /etc/p2pev/key.password
                       sudo chown p2pev:p2pev /etc/p2pev/key.json /etc/p2pev/key.password   (both stay mode 600)
  2. the operator's deployment file to /etc/p2pev/deployment.json; edit /etc/p2pev/agent.config.json
  3. sudo -u p2pev p2pev register --config /etc/p2pev/agent.config.json
  4. sudo -u p2pev p2pev doctor --config /etc/p2pev/agent.config.json
  5. sudo systemctl start p2pev; p2pev status --config /etc/p2pev/agent.config.json
NEXT
