"""The one-line message for a server that cannot be reached, by kind of transport failure."""

import httpx

from mlitb.unreachable import unreachable_line

REQUEST = httpx.Request("GET", "http://example.invalid:8000/api/projects/1")


def test_each_transport_failure_is_one_line_naming_the_server_and_other_errors_are_left_alone():
    assert unreachable_line(httpx.ConnectError("[Errno 111] Connection refused", request=REQUEST)) == \
        "error: cannot reach http://example.invalid:8000: [Errno 111] Connection refused"
    assert unreachable_line(httpx.ConnectTimeout("", request=REQUEST)) == \
        "error: cannot reach http://example.invalid:8000: ConnectTimeout"
    assert unreachable_line(httpx.ReadTimeout("timed out", request=REQUEST)) == \
        "error: no answer from http://example.invalid:8000 in time: timed out"
    assert unreachable_line(httpx.RemoteProtocolError("peer closed", request=REQUEST)) == \
        "error: the connection to http://example.invalid:8000 failed: peer closed"
    assert unreachable_line(httpx.ConnectError("refused")).startswith("error: cannot reach the server: ")
    assert unreachable_line(ValueError("not httpx")) is None
    assert unreachable_line(httpx.HTTPStatusError("500", request=REQUEST, response=httpx.Response(500))) is None
