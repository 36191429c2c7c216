"""Owns the ``NextToken`` encoding shared by the services' paged operations."""

from __future__ import annotations

import base64
import json
from typing import Callable

from awsemu.errors import ApiError, invalid_input


def encode_token(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, make_error: Callable[[str], ApiError] = invalid_input) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        obj = json.loads(raw)
        offset, fp = obj["o"], obj["f"]
        if not isinstance(offset, int) or offset < 0 or not isinstance(fp, str):
            raise ValueError
        return offset, fp
    except Exception:
        raise make_error("Invalid parameter 'NextToken': the token is not valid") from None

