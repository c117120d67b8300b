"""Ed25519 key pairs for toolboxes, made in memory with `cryptography`."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# "<type> <base64 blob>[ comment]", the way authorized_keys and known_hosts hold keys.
PUBLIC_KEY = re.compile(r"^(?P<type>[a-z0-9@.-]{3,64}) (?P<blob>[A-Za-z0-9+/]+={0,2})(?: .*)?$")


@dataclass(frozen=True, repr=False)
class KeyPair:
    private_openssh: str  # PEM text ("-----BEGIN OPENSSH PRIVATE KEY-----"); never stored clear
    public_openssh: str  # "ssh-ed25519 AAAA… comment"
    fingerprint: str  # "SHA256:…", as `ssh-keygen -lf` prints it

    def __repr__(self) -> str:  # keeps the private half out of reprs, logs and tracebacks
        return f"KeyPair({self.fingerprint})"


def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line (type, blob, optional comment)."""
    match = PUBLIC_KEY.match(public_key.strip())
    if match is None:
        raise ValueError("not an OpenSSH public key line")
    digest = hashlib.sha256(base64.b64decode(match["blob"])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def key_material(public_key: str) -> str:
    """`<type> <blob>` without the comment: what identifies a key in authorized_keys."""
    match = PUBLIC_KEY.match(public_key.strip())
    if match is None:
        raise ValueError("not an OpenSSH public key line")
    return f"{match['type']} {match['blob']}"


def generate(comment: str) -> KeyPair:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    line = f"{public} {comment}"
    return KeyPair(private_openssh=private, public_openssh=line, fingerprint=fingerprint(line))


def public_from_private(private_openssh: str) -> str:
    """The `<type> <blob>` public half of an OpenSSH private key (e.g. the operator key)."""
    key = serialization.load_ssh_private_key(private_openssh.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
