"""VideoSDK's error codes and leave reasons, and the one exception the rules raise.

`Rejected` means the caller broke a rule: the command was refused, nothing was
emitted and nothing changed. Any other exception out of `decide` is a bug.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Error codes with VideoSDK's numbers (4xxx from the server, 3xxx client-side)."""

    INVALID_API_KEY = 4001
    INVALID_TOKEN = 4002
    INVALID_MEETING_ID = 4003
    INVALID_PARTICIPANT_ID = 4004
    DUPLICATE_PARTICIPANT = 4005
    ACCOUNT_DEACTIVATED = 4006
    INVALID_PERMISSIONS = 4008
    MAX_PARTICIPANT_REACHED = 4009
    MAX_SPEAKER_REACHED = 4010
    UNAUTHORIZED_MEETING_ID = 4022
    UNAUTHORIZED_PARTICIPANT_ID = 4023
    UNAUTHORIZED_ROLE = 4024
    UNAUTHORIZED_REQUEST = 4025
    MEETING_ID_DISABLED = 4052
    APIKEY_DEACTIVATED = 4053
    RESPOND_ENTRY_FAILED = 4059
    CHANGE_MODE_FAILED = 4065
    REMOVE_PARTICIPANT_FAILED = 4066
    SOMETHING_WENT_WRONG = 5000
    ACTION_BEFORE_JOINED = 3035
    UNABLE_TO_JOIN = 3047
    ALREADY_IN_REQUESTED_STATE = 3054
    OPERATION_IN_PROGRESS = 3055
    MEETING_RECONNECTING = 3065
    NOT_SUPPORTED_IN_MODE = 3066
    INVALID_PARAMETER = 3073
    OPERATION_TIMED_OUT = 3079


class LeaveReason(IntEnum):
    """Why a participant left, with VideoSDK's numbers.

    1001-1011 are decided by the server, 1101 and above by the client SDK.
    """

    WEBSOCKET_DISCONNECTED = 1001
    REMOVE_PEER = 1002
    REMOVE_PEER_VIEWER_MODE_CHANGED = 1003
    REMOVE_PEER_MEDIA_RELAY_STOP = 1004
    SWITCH_ROOM = 1005
    ROOM_CLOSE = 1006
    UNKNOWN = 1007
    REMOVE_ALL = 1008
    MEETING_END_API = 1009
    REMOVE_PEER_API = 1010
    DUPLICATE_PARTICIPANT = 1011
    MANUAL_LEAVE_CALLED = 1101
    WEBSOCKET_CONNECTION_ATTEMPTS_EXHAUSTED = 1102
    JOIN_ROOM_FAILED = 1103
    SWITCH_ROOM_FAILED = 1104


class Rejected(Exception):
    """A command broke a rule of the meeting; `code` says which, `message` says how."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{int(self.code)} {self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"Rejected({self.code.name}, {self.message!r})"

    def __reduce__(self) -> tuple[type[Rejected], tuple[ErrorCode, str]]:
        return (Rejected, (self.code, self.message))
