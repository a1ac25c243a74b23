"""OpenAPI links between the API's operations: where a response's values lead next.

A client (and Schemathesis' stateful tests) can follow them: a vendor to its keys, a key to
its revocation, a submission or a listed result to the result, its artifacts and each one,
and its exports. They are added to the schema FastAPI generates, by path and method, so that
no route needs to know of them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

# Targets, as (method, path).
KEYS = ("post", "/api/v1/keys")
REVOKE = ("post", "/api/v1/keys/{kid}/revoke")
RESULT = ("get", "/api/v1/results/{submission_id}")
ARTIFACTS = ("get", "/api/v1/results/{submission_id}/artifacts")
ARTIFACT = ("get", "/api/v1/results/{submission_id}/artifacts/{name}")
EXPORT = ("get", "/api/v1/results/{submission_id}/export.{suffix}")
COMPARE = ("get", "/api/v1/compare")
PAGE = ("get", "/results/{submission_id}")
LEADERBOARD = ("get", "/models/{model}")
SAME_ID = {"submission_id": "$request.path.submission_id"}

# (method, path, status) -> {link name: (target, the link's fields)}
LINKS: dict[tuple[str, str, str], dict[str, tuple[tuple[str, str], dict[str, Any]]]] = {
    ("post", "/api/v1/vendors", "201"): {
        "AddKey": (KEYS, {"requestBody": {"vendor": "$response.body#/name"}}),
    },
    ("post", "/api/v1/keys", "201"): {
        "RevokeKey": (REVOKE, {"parameters": {"kid": "$response.body#/key_id"}}),
    },
    ("post", "/api/v1/submissions", "201"): {
        "GetResult": (RESULT, {"parameters": {"submission_id": "$response.body#/submission_id"}}),
    },
    ("get", "/api/v1/results", "200"): {
        "GetResult": (RESULT, {"parameters": {"submission_id": "$response.body#/0/id"}}),
        "Compare": (COMPARE, {"parameters": {"model": "$response.body#/0/model"}}),
        "RevokeKey": (REVOKE, {"parameters": {"kid": "$response.body#/0/key_id"}}),
    },
    (*RESULT, "200"): {
        "ListArtifacts": (ARTIFACTS, {"parameters": SAME_ID}),
        "Export": (EXPORT, {"parameters": SAME_ID}),
        "ResultPage": (PAGE, {"parameters": SAME_ID}),
        "Leaderboard": (LEADERBOARD, {"parameters": {"model": "$response.body#/model"}}),
    },
    (*ARTIFACTS, "200"): {
        "GetArtifact": (ARTIFACT, {"parameters": {**SAME_ID, "name": "$response.body#/0/name"}}),
    },
}


def install(app: FastAPI) -> None:
    """Add LINKS to `app`'s OpenAPI schema when it is first built."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _link(build()["paths"])
        return build()  # FastAPI's, once built, answers the schema it keeps

    app.openapi = openapi  # type: ignore[method-assign]


def _link(paths: dict[str, Any]) -> None:
    for (method, path, status), links in LINKS.items():
        response = paths[path][method]["responses"].setdefault(status, {"description": "Created"})
        response["links"] = {
            name: {"operationId": paths[to][how]["operationId"], **fields}
            for name, ((how, to), fields) in links.items()
        }
