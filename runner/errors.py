"""The one exception a caller of runner/ has to handle before a run starts."""

from __future__ import annotations


class RequestError(ValueError):
    """A run request was refused before anything started; `field` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
