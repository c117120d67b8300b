"""The key vault: master-key encryption of secrets at rest, per-toolbox SSH keys
(bootstrap, rotation, revocation) and pinned SSH host keys. See api/vault/README.md.

    crypto.py      AES-256-GCM keyring (several master keys: the first seals, all unseal)
    master.py      where the master key comes from (DTMA_MASTER_KEY or the demo key file)
    startup.py     start-up check: the keys open this database, else refuse to start
    sealed.py      every sealed column; re-sealing for master-key rotation
    sshkeys.py     ed25519 key pairs and fingerprints (cryptography, in memory)
    keystore.py    per-toolbox keys in the database
    hostkeys.py    trust on first use, strict afterwards, admin acceptance
    credentials.py the console's CredentialSource: own key, else the bootstrap key
    rotation.py    bootstrap / rotate / revoke as console runs of the ssh_access role
    router.py      HTTP routes; commands.py: `dtma-console keys ...`
"""
