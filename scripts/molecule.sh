#!/usr/bin/env bash
# Run every Molecule scenario (molecule/<scenario>) on the local droplet image.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
export DTMA_DROPLET_IMAGE
DTMA_DROPLET_IMAGE=$(.venv/bin/python -m sandbox.image)
for scenario in molecule/*/; do
    [ -f "$scenario/molecule.yml" ] || continue
    name=$(basename "$scenario")
    echo "== molecule test -s $name"
    molecule test -s "$name"
done
