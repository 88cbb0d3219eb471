"""Kubernetes `Status` errors.

Every failure the apiserver reports is a `meta/v1 Status` object; clients branch on `reason` and `code`.
`APIError` carries one; the apiserver renders it, the client library raises it back from a response body.
The constructors below name the reasons Kubernetes uses (k8s.io/apimachinery/pkg/api/errors).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One entry of `details.causes`: which field is wrong and why (`reason` is a CauseType)."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "reason": self.reason}


@dataclass
class APIError(Exception):
    code: int
    reason: str
    message: str
    name: str | None = None
    kind: str | None = None
    group: str | None = None
    causes: list[Cause] = field(default_factory=list)
    retry_after_seconds: int | None = None

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind is not None:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after_seconds is not None:
            details["retryAfterSeconds"] = self.retry_after_seconds
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body

    @classmethod
    def from_status(cls, body: dict[str, Any], code: int | None = None) -> "APIError":
        details = body.get("details") or {}
        return cls(
            code=int(body.get("code") or code or 500),
            reason=body.get("reason") or "Unknown",
            message=body.get("message") or "",
            name=details.get("name"),
            kind=details.get("kind"),
            group=details.get("group"),
            causes=[
                Cause(c.get("field", ""), c.get("message", ""), c.get("reason", ""))
                for c in details.get("causes") or []
            ],
        )


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, name: str, group: str = "") -> APIError:
    return APIError(404, "NotFound", f'{_qualified(plural, group)} "{name}" not found', name, plural, group)


def already_exists(plural: str, name: str, group: str = "") -> APIError:
    return APIError(409, "AlreadyExists", f'{_qualified(plural, group)} "{name}" already exists', name, plural, group)


def conflict(plural: str, name: str, why: str, group: str = "") -> APIError:
    msg = f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}'
    return APIError(409, "Conflict", msg, name, plural, group)


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> APIError:
    summary = ", ".join(f"{c.field}: {c.message}" for c in causes)
    msg = f'{kind}{"." + group if group else ""} "{name}" is invalid: {summary}'
    return APIError(422, "Invalid", msg, name, kind, group, causes)


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> APIError:
    return APIError(401, "Unauthorized", message)


def forbidden(message: str) -> APIError:
    return APIError(403, "Forbidden", message)


def method_not_allowed(message: str) -> APIError:
    return APIError(405, "MethodNotAllowed", message)


def gone(message: str) -> APIError:
    return APIError(410, "Expired", message)


def too_large(message: str) -> APIError:
    return APIError(413, "RequestEntityTooLarge", message)


def unsupported_media_type(message: str) -> APIError:
    return APIError(415, "UnsupportedMediaType", message)


def not_acceptable(message: str) -> APIError:
    return APIError(406, "NotAcceptable", message)


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", message)


def timeout(message: str) -> APIError:
    return APIError(504, "Timeout", message)


def service_unavailable(message: str) -> APIError:
    return APIError(503, "ServiceUnavailable", message)
