"""Owns the restJson1 error responses of the emulated services (``ApiError`` and the common shapes)."""

from __future__ import annotations


class ApiError(Exception):
    """A restJson1 error response.

    Serialized as HTTP status + ``x-amzn-ErrorType: <code>`` + JSON body
    ``{"__type": code, "message": msg, <members>}``. The members default to
    ``{"Message": msg, "Code": code}``: Security Hub's error shapes
    (InvalidInputException, InternalException, LimitExceededException, ...)
    have the members ``Message`` and ``Code``. Other services pass their
    shape's members (Detective: ``Message``, and for ValidationException
    ``ErrorCode``/``ErrorCodeReason``). The lower-case ``message`` is what
    generic AWS error parsers also read.
    """

    def __init__(self, status: int, code: str, message: str, members: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.members = members

    def body(self) -> dict:
        members = self.members if self.members is not None else {"Message": self.message, "Code": self.code}
        return {"__type": self.code, "message": self.message, **members}


def invalid_input(message: str) -> ApiError:
    # InvalidInputException: httpStatusCode 400 in the Security Hub model.
    return ApiError(400, "InvalidInputException", message)


def throttled_error() -> ApiError:
    # The Security Hub model has no TooManyRequestsException shape (it has
    # LimitExceededException and ThrottlingException, both 429), but the live
    # service answers throttled calls with HTTP 429 "TooManyRequestsException:
    # Too Many Requests" (as seen by boto3 users). Both the Rust SDK's
    # AwsErrorCodeClassifier and botocore's standard retry mode classify that
    # code as a throttling error, so the SDKs back off and retry it.
    return ApiError(429, "TooManyRequestsException", "Too Many Requests")


def internal_error(message: str = "Internal service failure") -> ApiError:
    # InternalException: httpStatusCode 500 in the Security Hub model.
    return ApiError(500, "InternalException", message)

