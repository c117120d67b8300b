"""The filters of the run history and the audit log, parsed once for the JSON routes and the
web pages alike: a filter value that does not parse is an InvalidInput naming the field
(422 with a sentence), never a 500 and never an empty page that hides the typo."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from api.errors import InvalidInput

# Action names as the console records them: "tool.deploy", "toolbox.maintenance.start".
ACTION = re.compile(r"^[a-z][a-z0-9_]{0,31}(\.[a-z0-9_]{1,32}){0,3}$")
TOOLBOX_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RUN_STATUSES = (
    "queued", "running", "successful", "failed", "unreachable", "timeout", "canceled",
    "error", "interrupted",
)  # fmt: skip
TIME_EXAMPLE = "2026-12-01T16:30 (UTC) or 2026-12-01T16:30:00+01:00"


def _blank(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    return text.strip()


def matching(field: str, text: str | None, pattern: re.Pattern[str], what: str) -> str | None:
    """`text` when it matches `pattern` whole, None when blank."""
    value = _blank(text)
    if value is not None and pattern.fullmatch(value) is None:
        raise InvalidInput(field, f"{field} must be {what} (got {value[:80]!r})")
    return value


def action(text: str | None) -> str | None:
    return matching("action", text, ACTION, "an action name such as tool.deploy")


def user_name(text: str | None) -> str | None:
    # Imported on call: api.services.users imports the web package (through tokens), which
    # imports this module, so any module-level import of users here is circular in one of
    # the two import orders.
    from api.services.users import USER_NAME

    return matching("user", text, USER_NAME, "a user name")


def toolbox_id(text: str | None) -> str | None:
    return matching("toolbox", text, TOOLBOX_ID, "a toolbox id")


def run_status(text: str | None) -> str | None:
    value = _blank(text)
    if value is not None and value not in RUN_STATUSES:
        raise InvalidInput("status", f"status must be one of {', '.join(RUN_STATUSES)}")
    return value


def moment(field: str, text: str | None) -> datetime | None:
    """An ISO 8601 time; one without a zone (what a datetime-local input sends) is UTC."""
    value = _blank(text)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(field, f"{field} must be a time such as {TIME_EXAMPLE}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class TimeRange:
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, since: str | None, until: str | None) -> TimeRange:
        found = cls(moment("since", since), moment("until", until))
        if found.since and found.until and found.since > found.until:
            raise InvalidInput("until", "until must not be before since")
        return found
