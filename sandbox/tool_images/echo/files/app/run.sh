#!/bin/sh
# PID 1 of the echo tool: httpd in the foreground, request log on stderr (-vv), and a
# TERM handler so `docker stop` ends it at once instead of after the kill timeout.
echo "echo tool: serving /www on port ${ECHO_PORT}"
httpd -f -vv -p "${ECHO_PORT}" -h /www &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; echo "echo tool: stopped"; exit 0' TERM INT
wait "$server"
status=$?
echo "echo tool: httpd exited with status ${status}" >&2
exit "$status"
