#!/bin/sh
# mmdebstrap customize hook: turn the bootstrapped tree ($1) into a "fresh DigitalOcean
# Docker droplet" that boots systemd inside a container.
set -eu
root="$1"

# Each droplet makes its own host keys on first boot, like a real cloud image does.
rm -f "$root"/etc/ssh/ssh_host_*
cat > "$root/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/ssh-hostkeys.service \
    "$root/etc/systemd/system/multi-user.target.wants/ssh-hostkeys.service"

# Root logs in with keys only, as on DigitalOcean.
install -d -m 0700 "$root/root/.ssh"
cat > "$root/etc/ssh/sshd_config.d/droplet.conf" <<'CONF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
CONF

# The inner Docker engine runs on vfs: overlay on overlay is not available in a container.
install -d "$root/etc/docker"
cat > "$root/etc/docker/daemon.json" <<'JSON'
{"storage-driver": "vfs", "log-driver": "json-file", "log-opts": {"max-size": "10m"}}
JSON

# Units that only make sense on real hardware or a real console.
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
            systemd-udev-trigger.service systemd-modules-load.service \
            systemd-remount-fs.service sys-kernel-config.mount sys-kernel-debug.mount \
            apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

# systemd makes a fresh machine id per droplet.
: > "$root/etc/machine-id"
echo "dtma-droplet" > "$root/etc/hostname"
