"""Logging of the servers (uvicorn's configuration) with secrets kept out: every token that travels in a query
string (`?token=`, `access_token=`, ...) is replaced by `REDACTED` before an access or error line is written."""

from __future__ import annotations

import copy
import logging
import re
from urllib.parse import unquote_plus

from uvicorn.config import LOGGING_CONFIG

# a query parameter: its name (percent-encoded or not) and value
PARAM = re.compile(r"([?&;])([^=&;#\s\"'?]+)=([^&;#\s\"']*)")
REDACTED = "REDACTED"


def _param(m: re.Match) -> str:
    # a name ending in "token" (token, invite_token, access_token, ...) in any case, also when percent-encoded
    # (the server decodes `%74oken` to `token`)
    if unquote_plus(m.group(2)).lower().endswith("token"):
        return f"{m.group(1)}{m.group(2)}={REDACTED}"
    return m.group(0)


def redact(text: str) -> str:
    return PARAM.sub(_param, text)


class RedactTokens(logging.Filter):
    """Rewrites a record's message and arguments (uvicorn passes the request's path with its query as one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def log_config() -> dict:
    """uvicorn's default logging configuration, with the redacting filter on its access and error loggers."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": RedactTokens}
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        config["loggers"].setdefault(name, {}).setdefault("filters", []).append("redact_tokens")
    return config
