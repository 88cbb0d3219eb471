"""How a Status from the server is printed, word for word as kubectl prints it.

`Error from server (NotFound): pods "x" not found`; an Invalid object prints the server's message alone
(`The Pod "x" is invalid: ...`); `context` is what was being done to which file, as in
`Error from server (AlreadyExists): error when creating "web.yaml": pods "web" already exists`.
"""
from __future__ import annotations

from api.errors import APIError


def error_from_server(e: APIError, context: str = "") -> str:
    if e.reason == "Invalid":
        return e.message
    if e.reason and e.reason != "Unknown":
        return f"Error from server ({e.reason}): {context}{e.message}"
    return f"Error from server: {context}{e.message}"
