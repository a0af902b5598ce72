#!/usr/bin/env bash
# How much an upload raises the server's memory: starts the server (fresh SQLite database and
# media directory), uploads a file of SIZE_MIB (default 25 MiB minus one byte, just under
# MEDIA_MAX_BYTES) with curl, and prints VmRSS / VmHWM (peak RSS) from /proc before and after.
# MEDIA_STORE and S3_* from the environment choose another store (default: a temp directory).
#
#   scripts/upload-rss.sh [path/to/nebula]     (default: target/release/nebula)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/nebula}")
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work" && DATABASE_URL="sqlite://$work/nebula.db" BACKEND_ADDR="127.0.0.1:$port" DEV_MODE=true \
  MEDIA_STORE="${MEDIA_STORE:-fs://$work/media}" RATE_LIMIT_AUTH_PER_MINUTE=0 NO_COLOR=1 exec "$bin") >"$work/nebula.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.2
done
token=$(curl -fsS "http://127.0.0.1:$port/auth/register" -H 'content-type: application/json' \
  -d '{"username":"rss","password":"rss-password"}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
size=$(( ${SIZE_MIB:-25} * 1024 * 1024 - 1 ))
head -c "$size" /dev/urandom >"$work/upload.bin"
mem() { grep -E '^(VmRSS|VmHWM)' "/proc/$server/status" | tr -s ' \t' ' ' | tr '\n' ' '; echo; }
# Warm up: one small upload, so the first-use allocations (pools, spool files) are not counted.
curl -fsS "http://127.0.0.1:$port/media?filename=warm.bin" -H "Authorization: Bearer $token" \
  --data-binary 'warm' >/dev/null
echo "before:  $(mem)"
curl -fsS "http://127.0.0.1:$port/media?filename=upload.bin" -H "Authorization: Bearer $token" \
  -H 'content-type: application/octet-stream' --data-binary "@$work/upload.bin" |
  python3 -c 'import json, sys; m = json.load(sys.stdin); print("uploaded:", m["size"], "bytes as", m["content_type"])'
echo "after:   $(mem)"
curl -fsS "http://127.0.0.1:$port/media?filename=upload.bin" -H "Authorization: Bearer $token" \
  -H 'content-type: application/octet-stream' --data-binary "@$work/upload.bin" >/dev/null
echo "again:   $(mem)"
