#!/usr/bin/env bash
# `make demo`: the sandbox fleet with the DTMA agent on every droplet, the console serving
# on http://127.0.0.1:8000 and an admin token to log in with.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
export ANSIBLE_CONFIG=$PWD/ansible.cfg

"$BIN/dtma-console" sandbox up --droplets "${DTMA_DEMO_DROPLETS:-3}"
inventory=$("$BIN/dtma-console" sandbox inventory)
echo "Inventory: $inventory"
echo "Try: $BIN/ansible all -i $inventory -m ping"
