"""Toolboxes from the console (admins): the New toolbox form of the Toolboxes page and the
Retire action of a toolbox's page. Both call the provisioning service exactly as
POST/DELETE /api/v1/toolboxes do (context.provisioner), after the same validation
(ProvisionToolbox, the Deploy form's rules for the optional tool), then open the run's page,
which follows its events live. A refused form starts nothing and shows the API's error code
and message, each problem next to its field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, SessionDep, visible_toolbox
from api.errors import ApiError, InvalidInput, validation_failure
from api.models import Toolbox, User
from api.schemas.actions import DeployTool
from api.schemas.toolboxes import ProvisionToolbox
from api.services.provisioning import ProvisionSpec
from api.web.auth import Browser, PostingBrowserDep
from api.web.deploy_form import DeployForm
from api.web.templating import render

router = APIRouter(include_in_schema=False)

ToolboxIdPath = Annotated[str, Path(max_length=64)]
FIELDS = ("name", "region", "size", "tags", "owner")
# The optional tool's fields, named tool_<Deploy form field> in the form.
TOOL_FIELDS = ("name", "image", "ports", "env", "command", "restart_policy")
TOOL_PREFIX = "tool_"
NOT_ADMIN = "Only admins can create or retire toolboxes."


@dataclass
class ProvisionForm:
    """What the admin typed, the problems found (by field), and the error the API would
    have answered (its code and message, shown above the form)."""

    values: dict[str, str]
    tool: DeployForm
    owners: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    refused: ApiError | None = None

    @classmethod
    def empty(cls, db: Session) -> ProvisionForm:
        return cls(dict.fromkeys(FIELDS, ""), DeployForm.empty(), _user_names(db))

    @classmethod
    def submitted(cls, db: Session, form: dict[str, Any]) -> ProvisionForm:
        tool = {name: form.get(TOOL_PREFIX + name) or "" for name in TOOL_FIELDS}
        return cls(
            {name: str(form.get(name) or "").strip() for name in FIELDS},
            DeployForm.submitted(tool),
            _user_names(db),
        )

    def refuse(self, error: ApiError) -> None:
        """The first refusal is the one shown (as the API answers the first problem)."""
        if self.refused is None:
            self.refused = error
        where = str(error.extra.get("field") or "")
        if where:
            name = re.split(r"[.\[]", where, maxsplit=1)[0]
            self.errors.setdefault(name if name in FIELDS else "tools", error.message)

    def tool_error(self, name: str) -> str | None:
        return self.tool.errors.get(name)

    def parse(self) -> ProvisionSpec | None:
        """The validated request (ProvisionToolbox, as the API validates its body), or None
        with the problems recorded."""
        tools: list[DeployTool] = []
        tool_refused: InvalidInput | None = None
        if self.tool.values["name"] or self.tool.values["image"]:
            spec = self.tool.parse()
            if spec is None:
                tool_refused = InvalidInput("tools", f"the tool: {self._tool_problems()}")
            else:
                tools.append(spec)
        body = {
            "name": self.values["name"],
            "region": self.values["region"],
            "size": self.values["size"],
            "tags": [tag for tag in re.split(r"[\s,]+", self.values["tags"]) if tag],
            "owner": self.values["owner"] or None,
            "tools": tools,
        }
        checked: ProvisionToolbox | None = None
        try:
            checked = ProvisionToolbox.model_validate(body)
        except ValidationError as invalid:
            problems = [dict(problem) for problem in invalid.errors()]
            self.refuse(validation_failure(problems))
            for problem in problems[1:]:
                self.refuse(validation_failure([problem]))
        if tool_refused is not None:  # after the toolbox's own fields, as the API orders them
            self.refuse(tool_refused)
        if checked is None or self.refused is not None:
            return None
        return ProvisionSpec(
            checked.name, checked.region, checked.size, checked.tags, checked.owner, checked.tools
        )

    def _tool_problems(self) -> str:
        return "; ".join(f"{name}: {text}" for name, text in self.tool.errors.items())


def _user_names(db: Session) -> list[str]:
    return list(db.scalars(select(User.name).order_by(User.name)))


def _answer_started(request: Request, run_id: str) -> Response:
    """Open the run's page: htmx follows HX-Redirect with a page load; a plain form post
    gets a 303."""
    target = f"/runs/{run_id}"
    if request.headers.get("hx-request"):
        return HTMLResponse("", headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@router.post("/toolboxes", response_class=HTMLResponse)
async def provision(
    request: Request, browser: PostingBrowserDep, context: ContextDep, db: SessionDep
) -> Response:
    """The New toolbox form: POST /api/v1/toolboxes's validation and service, then the
    provisioning run's page."""
    if not browser.user.is_admin:
        return _not_allowed(request)
    form = await run_in_threadpool(ProvisionForm.submitted, db, dict(await request.form()))
    spec = form.parse()
    if spec is None:
        return _provision_form(request, browser, form, 422)
    try:
        _, run_id = await context.provisioner.provision(browser.user, spec)
    except ApiError as error:
        form.refuse(error)
        return _provision_form(request, browser, form, error.status)
    return _answer_started(request, run_id)


def _provision_form(
    request: Request, browser: Browser, form: ProvisionForm, status_code: int
) -> HTMLResponse:
    return render(
        request,
        "_provision_form.html",
        {"browser": browser, "provision": form, "deploy": form.tool},
        status_code=status_code,
    )


def _not_allowed(request: Request) -> HTMLResponse:
    shown = {"kind": "bad", "title": "Not allowed.", "text": NOT_ADMIN}
    return render(request, "_banner.html", shown, status_code=403)


# -- retirement ----------------------------------------------------------------------------
@router.post("/toolboxes/{toolbox_id}/retire", response_class=HTMLResponse)
async def retire(
    request: Request,
    toolbox_id: ToolboxIdPath,
    browser: PostingBrowserDep,
    context: ContextDep,
    db: SessionDep,
) -> Response:
    """Retire once the admin typed the toolbox's name (DELETE /api/v1/toolboxes/{id}'s
    service, `force` included), then the retirement run's page."""
    if not browser.user.is_admin:
        return _not_allowed(request)
    try:
        toolbox = await run_in_threadpool(visible_toolbox, db, browser.user, toolbox_id)
    except ApiError as error:
        shown = {"kind": "bad", "title": "Not retired.", "text": error.message}
        return render(request, "_banner.html", shown, status_code=error.status)
    form = await request.form()
    typed = str(form.get("confirm") or "").strip()
    if typed != toolbox.name:
        mismatch = f"type the toolbox's name, {toolbox.name}, to retire it"
        return _retire_form(request, browser, toolbox, InvalidInput("confirm", mismatch))
    try:
        run_id = await context.provisioner.retire(
            browser.user, toolbox.id, force=form.get("force") == "on"
        )
    except ApiError as error:
        return _retire_form(request, browser, toolbox, error)
    return _answer_started(request, run_id)


def _retire_form(
    request: Request, browser: Browser, toolbox: Toolbox, refused: ApiError
) -> HTMLResponse:
    shown = {"browser": browser, "toolbox": toolbox, "refused": refused}
    return render(request, "_retire_form.html", shown, status_code=refused.status)
