"""The parts of the OpenAPI schema FastAPI cannot infer: the multipart bodies and the error answers."""

from __future__ import annotations

from typing import Any

__all__ = ["ERRORS", "multipart_body"]

_IMAGE_FORM_SCHEMA = {
    "image": {"type": "string", "format": "binary", "description": "the photo (JPEG, PNG, WebP, BMP, TIFF)"},
}


def multipart_body(properties: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` of an endpoint that takes the multipart field ``image`` and the option `properties`."""
    schema = {"type": "object", "required": ["image"], "properties": {**_IMAGE_FORM_SCHEMA, **properties}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_ERROR_SCHEMA = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["code", "message"],
                }
            },
        }
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "empty body or malformed multipart (`empty_body`, `bad_multipart`)", "content": _ERROR_SCHEMA},
    408: {
        "description": "the request head or body did not arrive in time (`header_timeout`, `body_timeout`)",
        "content": _ERROR_SCHEMA,
    },
    413: {
        "description": "upload or pixel count over the limit (`upload_too_large`, `too_many_pixels`)",
        "content": _ERROR_SCHEMA,
    },
    415: {"description": "not multipart/form-data (`unsupported_media_type`)", "content": _ERROR_SCHEMA},
    422: {
        "description": "not an image, truncated, bad option (`invalid_image`, `truncated_image`, "
        "`missing_image`, `invalid_option`)",
        "content": _ERROR_SCHEMA,
    },
    503: {
        "description": "busy (`busy`, with Retry-After), too many connections (`too_many_connections`) or no "
        "weights (`no_weights`)",
        "content": _ERROR_SCHEMA,
    },
}
