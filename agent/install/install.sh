#!/bin/sh
# Installs the p2pev agent on Raspberry Pi OS (arm64, armhf) or Debian, as a systemd service.
#
#   sudo agent/install/install.sh              install from this checkout
#   agent/install/install.sh --root DIR        dry run: write every file under DIR, print the
#                                              system commands (useradd, systemctl …) instead
#   sudo agent/install/install.sh --node PATH  use this node (default: the one on PATH, else the
#                                              sudo user's nvm node, else /usr/bin/node)
#
# The Debian package (npm run package, docs/INSTALL.md) is the simpler way; this script is for a
# checkout on a device.
#
# What it does: copies the package to /opt/p2pev and installs its production dependencies
# (npm ci, npm run build, then npm prune --omit=dev), creates the system user p2pev (group dialout, for the RS-485 adapter),
# the config skeleton /etc/p2pev/agent.config.json (never overwrites one), the udev rule that
# names the adapter /dev/p2pev-meter, p2pev's own journal namespace (bounded, persistent; the
# system's journald is not touched), and the systemd unit p2pev.service
# (enabled, not started: the config and the key come first; see docs/INSTALL.md).
set -eu

ROOT=""
DRY=0
SKIP_NPM=0
NODE=""
IN_HOME=0
usage() {
  cat <<USAGE
usage: install.sh [--root DIR] [--skip-npm] [--node PATH]
  --root DIR   install into DIR instead of / (a dry run: system commands are printed, not run)
  --skip-npm   do not run npm ci in /opt/p2pev (dependencies installed some other way)
  --node PATH  the node binary to run the agent with (Node.js 22 or 24 LTS recommended)
USAGE
}
while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || { echo "install.sh: --root needs a directory" >&2; exit 2; }
            ROOT=$(cd "$2" 2>/dev/null && pwd) || { echo "install.sh: $2 is not a directory" >&2; exit 2; }
            DRY=1; shift 2 ;;
    --skip-npm) SKIP_NPM=1; shift ;;
    --node) [ $# -ge 2 ] || { echo "install.sh: --node needs the path of a node binary" >&2; exit 2; }
            NODE=$2; shift 2 ;;
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

# sudo resets PATH (secure_path): a node from nvm is then not on it. Look in the sudo user's nvm
# (the newest version there) before the system's.
if [ -z "$NODE" ]; then
  NODE=$(command -v node || true)
fi
if [ -z "$NODE" ] && [ -n "${SUDO_USER:-}" ]; then
  NVM_DIR_OF_USER=$(getent passwd "$SUDO_USER" | cut -d: -f6)/.nvm/versions/node
  if [ -d "$NVM_DIR_OF_USER" ]; then
    NEWEST=$(find "$NVM_DIR_OF_USER" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1)
    [ -n "$NEWEST" ] && [ -x "$NVM_DIR_OF_USER/$NEWEST/bin/node" ] && NODE="$NVM_DIR_OF_USER/$NEWEST/bin/node" && IN_HOME=1
  fi
fi
if [ -z "$NODE" ]; then
  for candidate in /usr/bin/node /usr/local/bin/node; do
    if [ -x "$candidate" ]; then NODE=$candidate; break; fi
  done
fi
[ -n "$NODE" ] || die "node is not found (not on PATH, nor in ~$SUDO_USER/.nvm, nor /usr/bin): install Node.js 22 or 24 LTS first (docs/INSTALL.md), or give --node PATH"
[ -x "$NODE" ] || die "$NODE is not an executable node"
# 20.19: the noble cryptography packages need it (their package.json engines).
NODE_OK=$("$NODE" -p 'const [a, b] = process.versions.node.split(".").map(Number); a > 20 || (a === 20 && b >= 19) ? 1 : 0')
[ "$NODE_OK" = 1 ] || die "node $("$NODE" --version) is too old: p2pev needs Node.js 20.19 or newer; install 22 or 24 LTS (docs/INSTALL.md)"
NODE_MAJOR=$("$NODE" -p 'process.versions.node.split(".")[0]')
if [ "$NODE_MAJOR" -lt 22 ]; then
  say "warning: node $("$NODE" --version) reached its end of life in April 2026: use Node.js 22 or 24 LTS"
fi
# npm beside that node (nvm's), else the one on PATH.
NPM=$(dirname "$NODE")/npm
[ -x "$NPM" ] || NPM=npm
# The unit hides /home and /root (ProtectHome=yes): a node from there (nvm) is copied beside the
# package, and the unit and the p2pev command use the copy.
case "$NODE" in
  /home/*|/root/*) IN_HOME=1 ;;
esac
if [ "$IN_HOME" = 1 ]; then
    say "copying $NODE to /opt/p2pev/node/bin/node (the service cannot see /home or /root)"
    install -D -m 0755 "$NODE" "$ROOT/opt/p2pev/node/bin/node"
    NODE=/opt/p2pev/node/bin/node
fi

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
  run "$NPM" ci --no-audit --no-fund --prefix "$PREFIX"
  run "$NPM" run build --prefix "$PREFIX"
  run "$NPM" prune --omit=dev --no-audit --no-fund --prefix "$PREFIX"
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

say "p2pev's journal namespace (persistent, 64 MB at most; the system journal is left alone)"
install -D -m 0644 "$HERE/journald@p2pev.conf" "$ROOT/etc/systemd/journald@p2pev.conf"

say "systemd unit p2pev.service (node: $NODE)"
mkdir -p "$ROOT/etc/systemd/system"
sed "s|@NODE@|$NODE|g" "$HERE/p2pev.service" >"$ROOT/etc/systemd/system/p2pev.service"
chmod 0644 "$ROOT/etc/systemd/system/p2pev.service"
# A wrapper rather than a link to bin/p2pev.mjs: its `#!/usr/bin/env node` finds no node under sudo
# when node came from nvm.
mkdir -p "$ROOT/usr/local/bin"
rm -f "$ROOT/usr/local/bin/p2pev"
printf '#!/bin/sh\nexec %s /opt/p2pev/bin/p2pev.mjs "$@"\n' "$NODE" >"$ROOT/usr/local/bin/p2pev"
chmod 0755 "$ROOT/usr/local/bin/p2pev"
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
     logs: journalctl --namespace p2pev -f   (errors only: -p err)
NEXT
