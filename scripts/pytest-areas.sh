#!/usr/bin/env bash
# Run the test suite one area (tests/<area>) per job, each on a sandbox fleet of its own, in
# DTMA_TEST_LANES parallel lanes (default 3).
#
#   bash scripts/pytest-areas.sh                 every tests/<area>
#   bash scripts/pytest-areas.sh --with-molecule every area and the Molecule scenarios (make test)
#   bash scripts/pytest-areas.sh api tools       those areas
#
# Areas change their droplets on purpose (agents installed with their console's token, SSH
# keys rotated, host keys regenerated, droplets stopped): a fleet per area keeps one area's
# faults from leaking into the next, exactly as each area is developed. Each area has its own
# loopback net, emulator port and container names (by its position in the list), so areas of
# different lanes run side by side; most of an area's time is spent waiting on droplets
# (settle windows, SSH round trips, systemd), so two cores carry three lanes. The heaviest
# areas start first (AREA_SECONDS, measured by CI) so that the lanes end together. Each area's
# output is printed whole when it ends, with its 15 slowest tests.
#
# Two runs side by side (two engineers on one machine) stay apart with DTMA_TEST_SLOT
# (default 0): it shifts the fleets' loopback nets, emulator ports and container names.
set -uo pipefail
cd "$(dirname "$0")/.."

# Seconds each job took in 3 lanes (clean-clone CI of 2026-12-01, 1989 s in all); only
# their order matters.
declare -A AREA_SECONDS=(
    [api]=1084 [dtma]=862 [molecule]=744 [tools]=641 [rollouts]=608 [web]=532 [monitoring]=437
    [distributed]=298 [vault]=207 [runner]=177 [fleet]=133 [fuzz]=120 [agent]=26
)

with_molecule=0
areas=()
for arg in "$@"; do
    case "$arg" in
        --with-molecule) with_molecule=1 ;;
        *) areas+=("$arg") ;;
    esac
done
if [ ${#areas[@]} -eq 0 ]; then
    for dir in tests/*/; do areas+=("$(basename "$dir")"); done
    [ $with_molecule -eq 0 ] || areas+=(molecule)
fi

slot=${DTMA_TEST_SLOT:-0}
lanes=${DTMA_TEST_LANES:-3}
net_base=$((40 + 20 * slot))
port_base=$((8140 + 20 * slot))
name_tag=$([ "$slot" -eq 0 ] && echo test || echo "test$slot")
logs=".sandbox-$name_tag/logs"
rm -rf "$logs" && mkdir -p "$logs"

# run_job AREA INDEX: one area (or the Molecule scenarios) with its output in $logs/AREA.log,
# printed whole when it ends; its exit status in $logs/AREA.status.
run_job() {
    local area=$1 index=$2 started=$SECONDS status label="tests/$1"
    [ "$area" != molecule ] || label="molecule scenarios"
    echo "== $label: started (lane $3)"
    if [ "$area" = molecule ]; then
        bash scripts/molecule.sh >"$logs/$area.log" 2>&1
    else
        DTMA_SANDBOX_DIR="$PWD/.sandbox-$name_tag/$area" \
        DTMA_SANDBOX_NET="127.0.$((net_base + index))" \
        DTMA_SANDBOX_API_PORT="$((port_base + index))" \
        DTMA_SANDBOX_PREFIX="$name_tag-$area-" \
            .venv/bin/pytest "tests/$area" --durations=15 ${PYTEST_ARGS:-} >"$logs/$area.log" 2>&1
    fi
    status=$?
    echo "$status" >"$logs/$area.status"
    echo "$((SECONDS - started))" >"$logs/$area.seconds"
    {
        flock 9
        echo "== $label"
        cat "$logs/$area.log"
        echo "== $label: exit $status in $((SECONDS - started)) s"
    } 9>"$logs/.print-lock"
}

# Heaviest first, each to the lane that is free first (longest-processing-time scheduling,
# done by the lanes taking the next job from one queue).
mapfile -t queue < <(
    for i in "${!areas[@]}"; do
        echo "${AREA_SECONDS[${areas[$i]}]:-100} $((i + 1)) ${areas[$i]}"
    done | sort -k1,1nr -k2,2n
)
printf '%s\n' "${queue[@]}" >"$logs/.queue"
next_job() {
    # Prints the next "seconds index area" line of the queue and removes it; nothing when empty.
    {
        flock 8
        head -n 1 "$logs/.queue"
        sed -i 1d "$logs/.queue"
    } 8>"$logs/.queue-lock"
}
lane() {
    local job
    while job=$(next_job) && [ -n "$job" ]; do
        read -r _ index area <<<"$job"
        run_job "$area" "$index" "$1"
    done
}

# Each lane in a process group of its own (set -m), so that an INT or TERM of this script
# reaches every area: the trap passes it on as SIGTERM (a background job may ignore SIGINT),
# which tests/conftest.py turns into pytest's teardown (fleets removed).
set -m
started=$SECONDS
pids=()
for lane_number in $(seq 1 "$lanes"); do
    lane "$lane_number" &
    pids+=($!)
done
stop_lanes() {
    trap - INT TERM
    echo "== interrupted: stopping the lanes (each area tears its fleet down)"
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
    wait
    exit 130
}
trap stop_lanes INT TERM
wait "${pids[@]}"

failed=()
echo "== ${#areas[@]} jobs in $lanes lanes: $((SECONDS - started)) s; each job (s, exit):"
for area in "${areas[@]}"; do
    status=$(cat "$logs/$area.status" 2>/dev/null || echo none)
    printf '   %-12s %5s  %s\n' "$area" "$(cat "$logs/$area.seconds" 2>/dev/null)" "$status"
    [ "$status" = 0 ] || failed+=("$area")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed areas: ${failed[*]}"
    exit 1
fi
echo "all ${#areas[@]} jobs passed"
