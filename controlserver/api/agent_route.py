"""A route class for the agents' hot endpoints (registration and heartbeat).

FastAPI solves every dependency and validates the body on each request, which the registration
storm measured as the largest share of the event loop's CPU time. AgentRoute keeps FastAPI's
route for everything that is declared (OpenAPI schema, response model, error handling) and adds
a fast path for well-formed requests only:

- an `Authorization: Bearer <token>` header,
- a JSON body (`Content-Type: application/json`) that the endpoint's pydantic model accepts,
- path parameters that match their patterns in PATH_PATTERNS.

Then it calls the endpoint with `request`, the validated body, `token` and the path parameters.
Any other request goes through FastAPI's own handler unchanged, so every rejection (missing
token, malformed JSON, an invalid field) produces the same status and message as before.
"""

from __future__ import annotations

import inspect
import re
import typing

from fastapi import Request
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ValidationError

from controlserver.api import schemas

# Path parameters that the fast path accepts, with the patterns that their Path() declares.
PATH_PATTERNS = {"printer_id": re.compile(schemas.PRINTER_ID_PATTERN)}


class AgentRoute(APIRoute):
    """An APIRoute whose endpoint takes `request`, `body` (a pydantic model), `token` and path parameters."""

    def get_route_handler(self):
        standard_handler = super().get_route_handler()
        endpoint = self.endpoint
        hints = typing.get_type_hints(endpoint)
        body_model = hints.get("body")
        parameters = set(inspect.signature(endpoint).parameters)
        path_names = parameters - {"request", "body", "token"}
        if not (isinstance(body_model, type) and issubclass(body_model, BaseModel)) or {"request", "token"} - parameters:
            raise TypeError(f"AgentRoute endpoint {endpoint.__name__} needs parameters request, body (a model) and token")
        unknown = path_names - set(PATH_PATTERNS)
        if unknown:
            raise TypeError(f"AgentRoute endpoint {endpoint.__name__}: no pattern for path parameters {sorted(unknown)}")

        async def handler(request: Request):
            token = _bearer_token(request)
            body = await _json_body(request, body_model) if token is not None else None
            path_values = _path_values(request, path_names) if body is not None else None
            if path_values is None:
                # Anything unusual, including every error, takes FastAPI's path. The body read
                # above stays cached on the request, so it is not received twice.
                return await standard_handler(request)
            return await endpoint(request=request, body=body, token=token, **path_values)

        return handler


def _bearer_token(request: Request) -> str | None:
    # The same parsing as fastapi.security.HTTPBearer.
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def _json_body(request: Request, model: type[BaseModel]) -> BaseModel | None:
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != "application/json":
        return None
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None


def _path_values(request: Request, names: set[str]) -> dict[str, str] | None:
    values = {}
    for name in names:
        value = request.path_params.get(name)
        if not isinstance(value, str) or not PATH_PATTERNS[name].fullmatch(value):
            return None
        values[name] = value
    return values
