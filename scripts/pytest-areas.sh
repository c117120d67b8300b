#!/usr/bin/env bash
# Run the test suite one area (tests/<area>) at a time, each on a sandbox fleet of its own.
#
# Areas change their droplets on purpose (agents installed with their console's token, SSH
# keys rotated, host keys regenerated, droplets stopped): a fleet per area keeps one area's
# faults from leaking into the next, exactly as each area is developed. Each fleet is torn
# down when its area ends, so only one runs at a time.
#
# Two runs side by side (two engineers on one machine) stay apart with DTMA_TEST_SLOT
# (default 0): it shifts the fleets' loopback nets, emulator ports and container names.
# Each area ends with its 15 slowest tests (where the suite's time goes).
set -uo pipefail
cd "$(dirname "$0")/.."

areas=("$@")
if [ ${#areas[@]} -eq 0 ]; then
    for dir in tests/*/; do areas+=("$(basename "$dir")"); done
fi

slot=${DTMA_TEST_SLOT:-0}
net_base=$((40 + 20 * slot))
port_base=$((8140 + 20 * slot))
name_tag=$([ "$slot" -eq 0 ] && echo test || echo "test$slot")

failed=()
index=0
for area in "${areas[@]}"; do
    index=$((index + 1))
    echo "== pytest tests/$area"
    started=$SECONDS
    DTMA_SANDBOX_DIR="$PWD/.sandbox-$name_tag/$area" \
    DTMA_SANDBOX_NET="127.0.$((net_base + index))" \
    DTMA_SANDBOX_API_PORT="$((port_base + index))" \
    DTMA_SANDBOX_PREFIX="$name_tag-$area-" \
        .venv/bin/pytest "tests/$area" --durations=15 ${PYTEST_ARGS:-}
    status=$?
    echo "== tests/$area: exit $status in $((SECONDS - started)) s"
    [ $status -eq 0 ] || failed+=("$area")
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "failed areas: ${failed[*]}"
    exit 1
fi
echo "all ${#areas[@]} test areas passed"
