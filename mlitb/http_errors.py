"""The registry's error shape on an HTTP app: one installer that the master (mlitb/server/app.py) and the
data server (mlitb/data/server.py) both use, so their error bodies cannot drift apart. It sits below both
packages (the data server must not import the master's server package)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlitb.errors import HTTP_CODES, ErrorCode, MlitbError, first_problem


def install_error_handlers(app: FastAPI,
                           validation_code: Callable[[tuple], ErrorCode] = lambda _loc: ErrorCode.INVALID_REQUEST,
                           ) -> None:
    """MlitbError, the framework's own errors (unknown path or method, unparsable body) and request validation
    errors all answer {code, number, message}; `validation_code` picks the code from the first problem's location."""

    @app.exception_handler(MlitbError)
    async def mlitb_error(_: Request, err: MlitbError):
        return JSONResponse(err.to_json(), status_code=err.code.http_status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        code = HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
        body = {"code": code.name, "number": code.number, "message": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError):
        loc, message = first_problem(exc.errors())
        err = MlitbError(validation_code(tuple(loc)), message)
        return JSONResponse(err.to_json(), status_code=err.code.http_status)
