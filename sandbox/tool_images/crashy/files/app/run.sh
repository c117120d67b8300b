#!/bin/sh
# PID 1 of the crashy tool: a few log lines one second apart, then a non-zero exit.
trap 'echo "crashy tool: stopped"; exit 0' TERM INT
echo "crashy tool: starting"
line=1
while [ "$line" -le "${CRASHY_LINES}" ]; do
    echo "crashy tool: working (${line}/${CRASHY_LINES})"
    sleep 1 &
    wait $!
    line=$((line + 1))
done
echo "crashy tool: fatal error, exiting with status ${CRASHY_EXIT_CODE}" >&2
exit "${CRASHY_EXIT_CODE}"
