"""/api/v1/toolboxes/{id}/ssh-key and /host-key: key metadata, rotation, host key pinning."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import AdminDep, ContextDep, SessionDep, ToolboxDep, UserDep
from api.services import audit
from api.vault import hostkeys, info, rotation
from api.vault.schemas import AcceptHostKey, HostKeysOut, KeyOperationOut, SshAccessOut

router = APIRouter(prefix="/api/v1/toolboxes/{toolbox_id}", tags=["ssh keys"])

_OPERATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Done and verified on the droplet", "model": KeyOperationOut},
    409: {"description": "The toolbox is busy, gone, or has no key to work with"},
    502: {"description": "A run failed: what was kept and why", "model": KeyOperationOut},
}


def _answer(outcome: rotation.KeyOutcome) -> JSONResponse:
    body = info.key_operation(outcome).model_dump(mode="json")
    return JSONResponse(body, status_code=200 if outcome.success else 502)


@router.get("/ssh-key", response_model=SshAccessOut)
def get_ssh_key(toolbox: ToolboxDep, session: SessionDep) -> SshAccessOut:
    """How the console reaches this toolbox: its key's fingerprint and history."""
    return info.ssh_access(session, toolbox)


@router.post("/ssh-key/rotate", response_model=KeyOperationOut, responses=_OPERATION_RESPONSES)
async def rotate_ssh_key(toolbox: ToolboxDep, user: UserDep, context: ContextDep) -> JSONResponse:
    """Give the toolbox a new key of its own: add it, prove a login with it alone, remove
    the old key, then make it the active one. The first call on a toolbox replaces the key
    the droplet was created with (bootstrap). On failure the old key keeps working."""
    return _answer(await rotation.rotate(context, toolbox.id, user))


@router.post("/ssh-key/revoke", response_model=KeyOperationOut, responses=_OPERATION_RESPONSES)
async def revoke_ssh_key(toolbox: ToolboxDep, user: AdminDep, context: ContextDep) -> JSONResponse:
    """Remove the toolbox's own key from the droplet and erase it (decommissioning; admin
    only). The console cannot reach the toolbox with it afterwards."""
    return _answer(await rotation.revoke(context, toolbox.id, user))


@router.get("/host-key", response_model=HostKeysOut)
def get_host_key(
    toolbox: ToolboxDep,
    _admin: AdminDep,
    context: ContextDep,
    session: SessionDep,
    scan: Annotated[bool, Query(description="Also read what the droplet offers now")] = False,
) -> HostKeysOut:
    """The pinned SSH host keys of the toolbox (admin only)."""
    offered = None
    if scan and toolbox.address:
        offered = hostkeys.scan(toolbox.address, context.settings.ssh_keyscan_timeout)
    return info.host_keys(session, toolbox, offered)


@router.post("/host-key/accept", response_model=HostKeysOut)
async def accept_host_key(
    body: AcceptHostKey,
    toolbox: ToolboxDep,
    user: AdminDep,
    context: ContextDep,
    session: SessionDep,
) -> HostKeysOut:
    """Pin the host key the droplet offers now, if it has the given fingerprint (admin
    only, audited). It replaces the pinned keys; runs are checked against it from then on."""

    def accept() -> HostKeysOut:
        with audit.audited(
            session,
            user=user,
            action="toolbox.host_key.accept",
            toolbox_id=toolbox.id,
            parameters={"fingerprint": body.fingerprint},
        ):
            hostkeys.accept(
                session, toolbox, body.fingerprint, user, context.settings.ssh_keyscan_timeout
            )
        session.commit()
        return info.host_keys(session, toolbox, None)

    return await run_in_threadpool(accept)
