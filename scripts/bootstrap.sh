#!/usr/bin/env bash
# Make this machine ready for `make demo` / `make test`: Debian packages, uv, the project's
# virtualenv and a Docker engine that answers. Idempotent: a ready machine costs ~1 s.
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server and postgresql: the distributed mode (broker, shared database) and its tests.
# docker-registry and apache2-utils (htpasswd): the private registry tests/tools pulls from
# (its binary runs inside a sandbox droplet, on the droplet's own loopback).
DEB_PACKAGES=(docker.io mmdebstrap busybox-static openssh-client iproute2 ca-certificates
              python3-venv redis-server postgresql docker-registry apache2-utils
              ${DTMA_EXTRA_DEB_PACKAGES:-})
STATE_DIR=.sandbox-host
mkdir -p "$STATE_DIR"

die() { echo "bootstrap: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

missing=()
for package in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    is_root || die "missing Debian packages (${missing[*]}): run 'sudo apt-get install ${missing[*]}' or run make as root."
    echo "bootstrap: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Every droplet container runs systemd and dockerd, each holding inotify instances; the
# kernel's default of 128 per user stops the fleet at a dozen droplets (systemd exits 255).
if [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -lt 4096 ]; then
    is_root || die "fs.inotify.max_user_instances is too low for the sandbox: run 'sudo sysctl -w fs.inotify.max_user_instances=8192'."
    sysctl -q -w fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=524288
fi

# uv: from PyPI into a private virtualenv when it is not on PATH.
UV=$(command -v uv || true)
if [ -z "$UV" ]; then
    UV=$PWD/.tools/uv/bin/uv
    if [ ! -x "$UV" ]; then
        echo "bootstrap: installing uv from PyPI"
        python3 -m venv .tools/uv
        .tools/uv/bin/pip install -q uv
    fi
fi
# Compiled at install: where the environment sets PYTHONDONTWRITEBYTECODE (this machine's
# does), no process writes a .pyc, and every dtma-console, pytest or molecule start would
# compile its imports again (`import api.cli`: 3.7 s of CPU from source, 1.9 s compiled).
"$UV" sync --frozen --quiet --compile-bytecode
# The console's own packages are an editable install, which uv leaves uncompiled (~0.5 s of
# CPU per console process). Stale files are harmless: Python checks each source's mtime.
.venv/bin/python -m compileall -q -j 0 api runner sandbox >/dev/null

# A Docker engine that answers; start dockerd ourselves when none does.
if ! docker info >/dev/null 2>&1; then
    is_root || die "no Docker engine answers and only root can start one: start dockerd, or add yourself to the docker group."
    if [ -S /var/run/docker.sock ] && [ -f "$STATE_DIR/dockerd.pid" ] \
        && kill -0 "$(cat "$STATE_DIR/dockerd.pid")" 2>/dev/null; then
        :  # our dockerd is still starting
    else
        echo "bootstrap: starting dockerd (log: $STATE_DIR/dockerd.log)"
        setsid dockerd >"$STATE_DIR/dockerd.log" 2>&1 < /dev/null &
        echo $! > "$STATE_DIR/dockerd.pid"
    fi
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || die "dockerd did not come up; see $STATE_DIR/dockerd.log"
fi
