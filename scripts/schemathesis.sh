#!/usr/bin/env bash
# Tests a live server against its own OpenAPI document with Schemathesis (every check).
#
#   scripts/schemathesis.sh [path/to/nebula]     (default: target/debug/nebula)
#
# Starts the server on a free port with a fresh SQLite database, registers a user for a real
# token, and runs `schemathesis run /openapi.json --checks all`. Exits non-zero on any failure.
# Schemathesis is installed into .venv-schemathesis (PyPI) on first use.
# SCHEMATHESIS_SEED picks the generation seed (CI pins one; unset locally for a random one),
# SCHEMATHESIS_EXAMPLES the examples per operation.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/nebula}")
venv=.venv-schemathesis
version=4.32.5

if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# From the temp dir so that no developer .env is read; rate limits off so generated requests
# reach the logic behind them (the limits have their own tests).
(cd "$work" && DATABASE_URL="sqlite://$work/nebula.db" BACKEND_ADDR="127.0.0.1:$port" DEV_MODE=true \
  RATE_LIMIT_AUTH_PER_MINUTE=0 RATE_LIMIT_MESSAGES_PER_SECOND=0 NO_COLOR=1 \
  exec "$bin") >"$work/nebula.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.2
done
register() {
  curl -fsS "http://127.0.0.1:$port/auth/register" -H 'content-type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"schemathesis-password\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

seed_args=()
[ -n "${SCHEMATHESIS_SEED:-}" ] && seed_args=(--seed "$SCHEMATHESIS_SEED")
run() {
  local token=$1
  shift
  "$venv/bin/schemathesis" --config-file .ci/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" \
    --checks all --max-examples "${SCHEMATHESIS_EXAMPLES:-50}" "${seed_args[@]}" \
    -H "Authorization: Bearer $token" --no-color "$@"
}
status=0
# `POST /auth/logout-all` revokes the token it is called with, after which every other
# operation would only be tested unauthenticated: it runs on its own, after the rest, with a
# token of its own.
run "$(register schemathesis)" --exclude-path /auth/logout-all || status=$?
run "$(register schemathesis-revoker)" --include-path /auth/logout-all || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed; the server's log ends with:" >&2
  tail -n 30 "$work/nebula.log" >&2
fi
exit "$status"
