"""What `meetcore serve` tells its operator: its start lines, a line per join, leave and
session, a line per refusal, in text or as JSON (`docs/deploy.md`, "What meetcore serve
prints").

`MeetingLog` is an observer of the engine (`meetcore_records_appended`): it tells of
meetings from the records appended to the log, whatever caused them (a participant's
leave, a REST call, a lease that ran out). Refusals are logged where they happen (the
signaling's join, the REST endpoints). `configure` sets up the `logging` module for the
whole process: meetcore's loggers from `--log-level`, uvicorn's and other libraries'
from warning (uvicorn's access log and its own start lines only at debug).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from meetcore import LeaveReason, Record, hookimpl, one_line
from meetcore.events import ParticipantJoined, ParticipantLeft, SessionEnded, SessionStarted

__all__ = ["BANNER", "FORMATS", "LEVELS", "JsonFormatter", "MeetingLog", "TextFormatter"]

#: The values of `--log-level` and `--log-format`.
LEVELS: Final = ("debug", "info", "warning", "error")
FORMATS: Final = ("text", "json")
#: The logger of the command's own lines (where it serves, how to get a token): shown
#: whatever the level, and in text as the command's other lines are, `meetcore: ...`.
BANNER: Final = "meetcore.serve"
#: The loggers of meetcore and its plugins, which `--log-level` sets.
MEETCORE_LOGGERS: Final = (
    "meetcore",
    "meetcore_jwt",
    "meetcore_postgres",
    "meetcore_sqlite",
    "meetcore_webhooks",
    "meetcore_server",
    "meetcore_media",
    "meetcore_client",
)
#: uvicorn's loggers, which `configure` quiets below debug.
UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
#: How a session ended, in words.
_ENDED: Final = {
    "empty": "its last participant left",
    "ended": "it was ended",
    "deactivated": "its room was deactivated",
}
#: What every LogRecord has; anything else on a record came with `extra=`: its fields.
_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

log = logging.getLogger("meetcore.meetings")


def client_of(client: Any) -> str:
    """A connection's peer (Starlette's `request.client`) as `host:port`, for a log line."""
    return f"{client.host}:{client.port}" if client is not None else "an unknown address"


class MeetingLog:
    """An observer that logs (logger `meetcore.meetings`, info) each join, leave (with its
    reason's code and name), session start and end, and at debug every other event.

    `wanted()` says whether it would log anything: an engine without observers skips
    handing them records, so leave it out when the logger is off."""

    @staticmethod
    def wanted() -> bool:
        return log.isEnabledFor(logging.INFO)

    @hookimpl
    def meetcore_records_appended(self, records: Sequence[Record]) -> None:
        if self.wanted():
            for record in records:
                self._tell(record)

    def _tell(self, record: Record) -> None:
        event = record.event
        fields: dict[str, Any] = {
            "meetingId": record.meeting_id,
            "seq": record.version,
            "event": type(event).__struct_config__.tag,
        }
        where = f"meeting {record.meeting_id}"
        if isinstance(event, ParticipantJoined | ParticipantLeft):
            fields["participantId"] = event.participant_id
            fields["connectionId"] = event.connection_id
            who = f"participant {event.participant_id}"
            if isinstance(event, ParticipantJoined):
                text = f"{who} joined {where} (connection {event.connection_id})"
            else:
                reason = LeaveReason(event.reason)
                fields["reason"] = int(reason)
                fields["reasonName"] = reason.name
                text = (
                    f"{who} left {where}: {int(reason)} {reason.name} "
                    f"(connection {event.connection_id})"
                )
            log.info(text, extra=fields)
        elif isinstance(event, SessionStarted | SessionEnded):
            fields["sessionId"] = event.session_id
            session = f"session {event.session_id} of {where}"
            if isinstance(event, SessionStarted):
                log.info(f"{session} started", extra=fields)
            else:
                fields["endReason"] = event.reason
                log.info(f"{session} ended: {_ENDED.get(event.reason, event.reason)}", extra=fields)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug(f"{where} #{record.version}: {fields['event']}", extra=fields)


def _time(record: logging.LogRecord) -> str:
    """When the record was made: ISO 8601 in UTC, to the millisecond."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger>: <message>`, the message one printable line (a hostile
    name or id cannot forge a line: `meetcore.one_line`); a traceback follows on its
    own lines. The command's own lines (`BANNER`) are `meetcore: <message>`."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not message.isprintable():
            message = one_line(message)
        if record.name == BANNER and record.levelno == logging.INFO:
            return f"meetcore: {message}"
        line = f"{_time(record)} {record.levelname} {record.name}: {message}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `time` (ISO 8601, UTC), `level` (lower case), `logger`,
    `message`, the record's fields (`extra=`: `meetingId`, `participantId`, `code`...),
    and `exception` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD:
                entry.setdefault(name, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure(level: str, format: str, stream: TextIO | None = None) -> None:
    """Log to `stream` (stderr) in `format` (`FORMATS`): meetcore's loggers from `level`
    (`LEVELS`), other libraries' from warning (or `level`, if higher), uvicorn's from
    warning too but at debug, where its access log (a line per HTTP request) shows;
    the command's own lines always."""
    number = logging.getLevelNamesMapping()[level.upper()]
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(number, logging.WARNING))
    for name in MEETCORE_LOGGERS:
        logging.getLogger(name).setLevel(number)
    logging.getLogger(BANNER).setLevel(logging.INFO)
    quiet = number if number == logging.DEBUG else max(number, logging.WARNING)
    for name in UVICORN_LOGGERS:  # through the handler above, not uvicorn's own
        logger = logging.getLogger(name)
        logger.setLevel(quiet)
        logger.handlers = []
        logger.propagate = True
