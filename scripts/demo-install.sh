#!/usr/bin/env bash
# The fleet part of the demos (`make demo`, `make demo-distributed`), through a running
# console's API: import the sandbox droplets, install the DTMA agent and the echo tool on
# every toolbox, read their state again. Usage: demo-install.sh CONSOLE_URL ADMIN_TOKEN
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
CONSOLE=$1
admin_token=$2

call() {  # call METHOD PATH [JSON]: fail loudly with the console's own answer
    local answer
    answer=$(curl -sS -X "$1" "$CONSOLE$2" -H "Authorization: Bearer $admin_token" \
        -H 'Content-Type: application/json' ${3:+-d "$3"} -w '\n%{http_code}')
    local code=${answer##*$'\n'}
    if [ "${code:0:1}" != 2 ]; then
        echo "demo: $1 $2 answered $code: ${answer%$'\n'*}" >&2
        exit 1
    fi
    printf '%s' "${answer%$'\n'*}"
}

wait_for() {  # wait_for RUN_ID WHAT: until the run ended; fail loudly unless it succeeded
    local run
    for _ in $(seq 1 900); do
        run=$(call GET "/api/v1/runs/$1")
        case $(printf '%s' "$run" | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["status"])') in
            queued|running) sleep 2 ;;
            successful) return 0 ;;
            *) echo "demo: $2 did not succeed: $run" >&2; exit 1 ;;
        esac
    done
    echo "demo: $2 did not end within 30 minutes (run $1)" >&2
    exit 1
}
run_id() { "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["run_id"])'; }

call POST /api/v1/toolboxes/sync >/dev/null
ids=$(call GET /api/v1/toolboxes | "$BIN/python" -c 'import json,sys; print(" ".join(t["id"] for t in json.load(sys.stdin)))')
# Every install starts at once, so that every toolbox is locked by its own install: the
# monitor never tries to restart an agent that is still being installed.
declare -A installs
for id in $ids; do
    echo "Installing the DTMA agent on toolbox $id"
    installs[$id]=$(call POST "/api/v1/toolboxes/$id/dtma/install?wait=false" | run_id)
done
for id in $ids; do wait_for "${installs[$id]}" "the agent install on toolbox $id"; done
declare -A deploys
for id in $ids; do
    echo "Deploying the echo tool on toolbox $id"
    deploys[$id]=$(call POST "/api/v1/toolboxes/$id/tools?wait=false" \
        '{"name": "echo", "image": "dtma-tool-echo:1.0", "ports": [{"host_port": 8080, "container_port": 8080}]}' | run_id)
done
for id in $ids; do wait_for "${deploys[$id]}" "the echo deploy on toolbox $id"; done
call POST /api/v1/toolboxes/sync >/dev/null
