"""How a refusal reaches an HTTP client: VideoSDK's code in a JSON body, a fitting status."""

from __future__ import annotations

from starlette.responses import JSONResponse

from meetcore import ErrorCode, Rejected

__all__ = ["STATUS", "error_response", "status_of"]

#: The HTTP status for each code; codes not listed are 400 Bad Request.
STATUS: dict[int, int] = {
    ErrorCode.INVALID_API_KEY: 401,
    ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.INVALID_MEETING_ID: 404,
    ErrorCode.INVALID_PERMISSIONS: 403,
    ErrorCode.UNAUTHORIZED_MEETING_ID: 403,
    ErrorCode.UNAUTHORIZED_PARTICIPANT_ID: 403,
    ErrorCode.UNAUTHORIZED_ROLE: 403,
    ErrorCode.UNAUTHORIZED_REQUEST: 403,
    ErrorCode.ACCOUNT_DEACTIVATED: 403,
    ErrorCode.APIKEY_DEACTIVATED: 403,
    ErrorCode.DUPLICATE_PARTICIPANT: 409,
    ErrorCode.MAX_PARTICIPANT_REACHED: 409,
    ErrorCode.MEETING_ID_DISABLED: 409,
    ErrorCode.ALREADY_IN_REQUESTED_STATE: 409,
    ErrorCode.SOMETHING_WENT_WRONG: 500,
}


def status_of(code: int) -> int:
    """The HTTP status that goes with VideoSDK error `code`."""
    return STATUS.get(code, 400)


def error_response(error: Rejected) -> JSONResponse:
    """`{"statusCode", "code", "error", "message"}` with the status that fits the code."""
    status = status_of(error.code)
    return JSONResponse(
        {
            "statusCode": status,
            "code": int(error.code),
            "error": error.code.name,
            "message": error.message,
        },
        status_code=status,
    )
