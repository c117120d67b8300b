#!/usr/bin/env bash
# `make demo`: the sandbox fleet with the DTMA agent and an echo tool on every droplet, the
# console serving on http://127.0.0.1:8000 (in the background), and an admin token.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
PORT=${DTMA_PORT:-8000}
CONSOLE="http://127.0.0.1:$PORT"
umask 077  # the console's log, its database and demo.env: for this user only
mkdir -p .data && chmod 700 .data

"$BIN/dtma-console" sandbox up --droplets "${DTMA_DEMO_DROPLETS:-3}"
inventory=$("$BIN/dtma-console" sandbox inventory)
sandbox_dir=$(dirname "$(dirname "$inventory")")
echo "Inventory: $inventory"

# The console's configuration for the sandbox, kept for `make demo` reruns and for you
# (`source .data/demo.env` before other dtma-console commands). DTMA_DEMO=1: this console
# may keep a generated master key in .data (a production console refuses to start so).
cat > .data/demo.env <<ENV
export DTMA_DEMO=1
export ANSIBLE_CONFIG=$PWD/ansible.cfg
export DTMA_DO_API_URL=http://127.0.0.1:${DTMA_SANDBOX_API_PORT:-8089}/v2
export DTMA_DO_API_TOKEN=$(cat "$sandbox_dir/do_token")
export DTMA_INVENTORY=$inventory
export DTMA_SSH_KEY_FILE=$sandbox_dir/operator_key
export DTMA_PORT=$PORT
ENV
chmod 600 .data/demo.env
# shellcheck disable=SC1091
source .data/demo.env

# Restart the console if a previous demo left one running.
if [ -f .data/console.pid ] && kill -0 "$(cat .data/console.pid)" 2>/dev/null; then
    kill "$(cat .data/console.pid)"
    while kill -0 "$(cat .data/console.pid)" 2>/dev/null; do sleep 0.2; done
fi
admin_token=$("$BIN/dtma-console" token create --user admin --admin 2>/dev/null)
setsid "$BIN/dtma-console" serve >>.data/console.log 2>&1 < /dev/null &
echo $! > .data/console.pid
for _ in $(seq 1 100); do
    curl -fsS "$CONSOLE/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "$CONSOLE/readyz" >/dev/null || { echo "the console did not start; see .data/console.log" >&2; exit 1; }

bash scripts/demo-install.sh "$CONSOLE" "$admin_token"

echo
echo "Console: $CONSOLE  (log: .data/console.log, stop: make down)"
echo "API docs: $CONSOLE/docs"
echo "Admin token: $admin_token"
echo "Other dtma-console commands: source .data/demo.env first"
