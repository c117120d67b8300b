#!/usr/bin/env bash
# `make demo-distributed`: the README's "Past one machine" on the sandbox fleet. Redis and
# a PostgreSQL cluster (in .data/distributed, loopback only), the database migrated with
# `dtma-console db upgrade`, two workers and two console processes in celery mode, and, as
# `make demo`, the agent and the echo tool installed on every droplet (scripts/demo-install.sh).
# `make down-distributed` (or this script with `down`) stops them by their PIDs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
STATE=$PWD/.data/distributed
REDIS_PORT=${DTMA_DEMO_REDIS_PORT:-6390}
PG_PORT=${DTMA_DEMO_PG_PORT:-5440}
API_PORTS=(${DTMA_DEMO_API_PORTS:-8000 8001})
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
# The cluster runs as the postgres user, which cannot enter the 0700 data directory.
PG_DIR=${DTMA_DEMO_PG_DIR:-/var/tmp/dtma-demo-distributed/pg}

stop_all() {
    # Consoles, then workers (a warm shutdown lets their runs end), then the broker.
    for pidfile in "$STATE"/console-*.pid "$STATE"/worker-*.pid "$STATE"/redis.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        fi
        rm -f "$pidfile"
    done
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null || true
    fi
}
if [ "${1:-}" = down ]; then stop_all; echo "distributed demo stopped"; exit 0; fi
stop_all
mkdir -p "$STATE" && chmod 700 .data

"$BIN/dtma-console" sandbox up --droplets "${DTMA_DEMO_DROPLETS:-3}"
inventory=$("$BIN/dtma-console" sandbox inventory)
sandbox_dir=$(dirname "$(dirname "$inventory")")

# Redis: the broker (only run ids travel through it) and the events' live fan-out.
setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$STATE" >"$STATE/redis.log" 2>&1 < /dev/null &
echo $! > "$STATE/redis.pid"

# PostgreSQL: one database shared by every console and worker.
if [ ! -d "$PG_DIR/data" ]; then
    mkdir -p "$PG_DIR" && chown postgres:postgres "$PG_DIR"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
fi
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR" start >/dev/null
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='dtma'" \
    | grep -q 1 || psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE dtma"

cat > "$STATE/env" <<ENV
export ANSIBLE_CONFIG=$PWD/ansible.cfg
export DTMA_DO_API_URL=http://127.0.0.1:${DTMA_SANDBOX_API_PORT:-8089}/v2
export DTMA_DO_API_TOKEN=$(cat "$sandbox_dir/do_token")
export DTMA_INVENTORY=$inventory
export DTMA_SSH_KEY_FILE=$sandbox_dir/operator_key
export DTMA_DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/dtma
export DTMA_EXECUTOR=celery
export DTMA_BROKER_URL=redis://127.0.0.1:$REDIS_PORT/0
export DTMA_MASTER_KEY_FILE=$STATE/master.key
export DTMA_DEMO=1  # a demo: its master key may live beside its data
ENV
chmod 600 "$STATE/env"
# shellcheck disable=SC1091
source "$STATE/env"

"$BIN/dtma-console" db upgrade
admin_token=$("$BIN/dtma-console" token create --user admin --admin 2>/dev/null)  # makes the key
for n in 1 2; do
    setsid "$BIN/dtma-console" worker --concurrency 2 >"$STATE/worker-$n.log" 2>&1 < /dev/null &
    echo $! > "$STATE/worker-$n.pid"
done
for port in "${API_PORTS[@]}"; do
    DTMA_PORT=$port setsid "$BIN/dtma-console" serve >"$STATE/console-$port.log" 2>&1 < /dev/null &
    echo $! > "$STATE/console-$port.pid"
done
for port in "${API_PORTS[@]}"; do
    for _ in $(seq 1 150); do
        curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null \
        || { echo "console on $port did not start; see $STATE/console-$port.log" >&2; exit 1; }
done
# As `make demo`: the agent and the echo tool on every droplet (the runs go to the workers).
bash scripts/demo-install.sh "http://127.0.0.1:${API_PORTS[0]}" "$admin_token"

echo
for port in "${API_PORTS[@]}"; do echo "Console: http://127.0.0.1:$port"; done
echo "Workers: 2 (logs: $STATE/worker-*.log); settings: $STATE/env"
echo "Admin token: $admin_token"
echo "Stop: make down-distributed"
