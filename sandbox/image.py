"""The droplet image: built from the recipe in `droplet/`, tagged by the recipe's hash.

The image is rebuilt only when the recipe changes, so a warm machine pays nothing and a
fresh one pays one `mmdebstrap` (about a minute).
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from pathlib import Path

RECIPE_DIR = Path(__file__).parent / "droplet"
IMAGE_REPO = "dtma-droplet"
SUITE = "bookworm"


def recipe_hash() -> str:
    """Hash of everything that decides the image's content."""
    digest = hashlib.sha256(SUITE.encode())
    for path in sorted(RECIPE_DIR.iterdir()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:12]


def image_tag() -> str:
    return f"{IMAGE_REPO}:{recipe_hash()}"


def image_exists(tag: str) -> bool:
    probe = subprocess.run(["docker", "image", "inspect", tag], capture_output=True)
    return probe.returncode == 0


def ensure_image() -> str:
    """Return the droplet image tag, building it first when it is missing."""
    tag = image_tag()
    if image_exists(tag):
        return tag
    packages = ",".join(
        line.strip()
        for line in (RECIPE_DIR / "packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    hook = f'{shlex.quote(str(RECIPE_DIR / "customize.sh"))} "$1"'
    bootstrap = [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        f"--include={packages}",
        f"--customize-hook={hook}",
        '--aptopt=Acquire::Retries "3"',
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        SUITE,
        "-",
    ]
    importer = ["docker", "import", "-c", 'CMD ["/sbin/init"]', "-", tag]
    with subprocess.Popen(bootstrap, stdout=subprocess.PIPE) as producer:
        consumer = subprocess.run(importer, stdin=producer.stdout, capture_output=True, text=True)
        assert producer.stdout is not None
        producer.stdout.close()
        producer.wait()
    if producer.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed with exit code {producer.returncode}")
    if consumer.returncode != 0:
        raise RuntimeError(f"docker import failed: {consumer.stderr.strip()}")
    subprocess.run(["docker", "tag", tag, f"{IMAGE_REPO}:latest"], check=True)
    return tag


if __name__ == "__main__":
    print(ensure_image())
