"""The sans-I/O client session, fed bytes: states, per-state size caps, JOIN checks, LEAVE, rate limit, JOIN deadline."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb.codec.committed import MAX_BATCHES, trailer_bytes
from mlitb.config import Settings
from mlitb.errors import ErrorCode
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.master.transport import MemoryLink
from mlitb.protocol import HEADER_SIZE, MessageType, decode, encode
from mlitb.protocol.frames import MAX_JSON_PAYLOAD
from mlitb.protocol.session import ClientSession, State
from mlitb.server.auth import join_check, token_hash
from mlitb.workers.simulated import only
from tests.helpers import TINY_NETWORK, make_runtime, tiny_dataset

ADMIN = "the-admin-token"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def session_for(rt: ProjectRuntime, clock=None, admin: str | None = ADMIN) -> ClientSession:
    return ClientSession(MemoryLink(max_queue=1000), rt.settings, only(rt), join_check(admin), clock=clock or Clock())


def sent(session: ClientSession) -> list:
    frames = []
    while not session.link.inbox.empty():
        data = session.link.inbox.get_nowait()
        if data is not None:
            frames.append(decode(data, 1 << 30))
    return frames


def codes(session: ClientSession) -> list[str]:
    return [f.json()["code"] for f in sent(session) if f.type == MessageType.ERROR]


def join(role="trainer", project=1, **extra) -> bytes:
    return encode(MessageType.JOIN, project=project, payload={"role": role, **extra})


def private_runtime(settings: Settings | None = None) -> ProjectRuntime:
    spec = ProjectSpec(name="secret", network=TINY_NETWORK, private=True)
    rt = ProjectRuntime(1, spec, spec.build_network(), tiny_dataset(), settings or Settings())
    rt.grant(token_hash("owner"), token_hash("invite"))
    return rt


def test_a_join_makes_the_connection_a_client_of_the_project_and_welcomes_it():
    rt = make_runtime()
    s = session_for(rt)
    assert s.state is State.AWAITING_JOIN and s.receive(join()) is None
    assert s.state is State.JOINED and s.client.id in rt.clients
    welcome = [f for f in sent(s) if f.type == MessageType.WELCOME]
    assert welcome and welcome[0].json()["client_id"] == s.client.id and rt.bytes_in == len(join())


def test_the_cap_before_join_is_one_json_message_and_after_join_one_dense_gradient_with_its_commitments():
    rt = make_runtime()
    s = session_for(rt)
    assert s.max_message_bytes == HEADER_SIZE + MAX_JSON_PAYLOAD == 8216
    s.receive(join())
    # the largest payload of any kind: dense float32 with the most commitments (kind 6: 4,096 batches)
    assert s.max_message_bytes == HEADER_SIZE + 4 * rt.param_count + trailer_bytes(MAX_BATCHES)


def test_a_message_exactly_at_the_pre_join_cap_is_read_and_one_byte_more_closes_the_connection():
    rt = make_runtime()
    at_cap = encode(MessageType.EVAL, project=1, payload=b"\0" * MAX_JSON_PAYLOAD)
    s = session_for(rt)
    assert len(at_cap) == s.max_message_bytes and s.receive(at_cap).code == ErrorCode.NOT_JOINED
    assert not s.closed
    assert s.receive(at_cap + b"\0").code == ErrorCode.FRAME_TOO_LARGE
    assert s.closed and s.link.closed == (1008, "FRAME_TOO_LARGE") and codes(s) == ["NOT_JOINED", "FRAME_TOO_LARGE"]


def test_a_joined_gradient_one_byte_over_the_cap_closes_the_connection_and_leaves_the_project():
    rt = make_runtime()
    s = session_for(rt)
    s.receive(join())
    big = encode(MessageType.GRADIENT, project=1, count=1, payload=np.zeros(rt.param_count, np.float32))
    big += b"\0" * (trailer_bytes(MAX_BATCHES) + 1)
    assert len(big) == s.max_message_bytes + 1
    assert s.receive(big).code == ErrorCode.FRAME_TOO_LARGE
    assert s.closed and s.client.id not in rt.clients and rt.rejected_total == 1


def test_frames_before_join_are_refused_and_the_connection_may_still_join():
    rt = make_runtime()
    s = session_for(rt)
    assert s.receive(encode(MessageType.GRADIENT, project=1)).code == ErrorCode.NOT_JOINED
    assert s.receive(join(project=9)).code == ErrorCode.UNKNOWN_PROJECT
    assert s.receive(join(role="emperor")).code == ErrorCode.FRAME_MALFORMED
    assert s.receive_text().code == ErrorCode.FRAME_MALFORMED
    assert s.receive(join()) is None and s.state is State.JOINED


def test_a_second_join_is_already_joined_and_the_client_stays_joined():
    rt = make_runtime()
    s = session_for(rt)
    s.receive(join())
    assert s.receive(join(role="tracker")).code == ErrorCode.ALREADY_JOINED
    assert s.state is State.JOINED and rt.clients[s.client.id].role == "trainer" and len(rt.clients) == 1


def test_leave_removes_the_client_and_closes_normally():
    rt = make_runtime()
    s = session_for(rt)
    s.receive(join())
    assert s.receive(encode(MessageType.LEAVE, project=1)) is None
    assert s.closed and not rt.clients and s.link.closed == (1000, "")
    assert s.receive(encode(MessageType.EVAL, project=1)) is None  # after the close decision: discarded


@pytest.mark.parametrize("token,admitted", [(None, False), ("wrong", False), ("invite", True), ("owner", True),
                                            (ADMIN, True)])
def test_a_private_project_admits_its_invite_owner_or_admin_token_and_nothing_else(token, admitted):
    rt = private_runtime()
    s = session_for(rt)
    err = s.receive(join(**({"token": token} if token else {})))
    assert (err is None) == admitted and (s.state is State.JOINED) == admitted
    if not admitted:
        assert err.code == ErrorCode.FORBIDDEN and not s.closed


def test_without_an_admin_token_configured_no_token_passes_as_admin():
    rt = private_runtime()
    s = session_for(rt, admin=None)
    assert s.receive(join(token=ADMIN)).code == ErrorCode.FORBIDDEN


def test_a_full_project_refuses_the_join_and_closes():
    rt = make_runtime()
    rt.settings = Settings(max_clients_per_project=1)
    first, second = session_for(rt), session_for(rt)
    first.receive(join())
    assert second.receive(join()).code == ErrorCode.TOO_MANY_CONNECTIONS and second.closed


def test_the_rate_limit_allows_a_two_second_burst_then_the_sustained_rate_and_counts_refusals():
    rt = make_runtime()
    rate = int(rt.settings.max_frames_per_s)
    clock = Clock()
    s = session_for(rt, clock)
    s.receive(join(role="tracker"))  # the JOIN takes one of the burst's 2 s worth
    evaluation = encode(MessageType.EVAL, project=1, count=1, value=0.5)
    answers = [s.receive(evaluation) for _ in range(2 * rate)]
    assert answers[:-1] == [None] * (2 * rate - 1) and answers[-1].code == ErrorCode.RATE_LIMITED
    assert not s.closed and rt.rejected_total == 1
    clock.now += 1.0
    answers = [s.receive(evaluation) for _ in range(rate + 1)]
    assert answers[:-1] == [None] * rate and answers[-1].code == ErrorCode.RATE_LIMITED


def test_frames_before_join_and_text_messages_are_rate_limited_too():
    rt = make_runtime()
    s = session_for(rt)
    answers = [s.receive(b"junk") for _ in range(2 * int(rt.settings.max_frames_per_s) + 1)]
    assert {a.code for a in answers[:-1]} == {ErrorCode.FRAME_MALFORMED} and answers[-1].code == ErrorCode.RATE_LIMITED
    assert s.receive_text().code == ErrorCode.RATE_LIMITED


def test_the_join_deadline_counts_down_on_the_sessions_clock_and_expiry_closes_without_an_error_frame():
    rt = make_runtime()
    clock = Clock()
    s = session_for(rt, clock)
    assert s.time_to_join() == 15.0
    clock.now += 10
    assert s.time_to_join() == 5.0
    s.expire()
    assert s.closed and s.link.closed == (1008, "no JOIN in time") and codes(s) == []


def test_after_join_there_is_no_deadline_and_expiry_does_nothing():
    rt = make_runtime()
    s = session_for(rt)
    s.receive(join())
    assert s.time_to_join() is None
    s.expire()
    assert s.state is State.JOINED


def test_a_lost_connection_leaves_the_project_once():
    rt = make_runtime()
    s = session_for(rt)
    s.receive(join())
    s.connection_lost()
    s.connection_lost()
    assert s.closed and not rt.clients


def test_a_gradient_of_an_unsupported_or_disallowed_payload_kind_is_refused_and_the_connection_stays():
    rt = make_runtime()
    s = session_for(rt)
    s.receive(join())
    grad = encode(MessageType.GRADIENT, project=1, count=1, payload=np.zeros(rt.param_count, np.float32), kind=7)
    assert s.receive(grad).code == ErrorCode.UNKNOWN_PAYLOAD_KIND and s.state is State.JOINED
    # a download kind (shadow delta) is not this float32 project's upload codec
    grad = encode(MessageType.GRADIENT, project=1, count=1, payload=np.zeros(rt.param_count, np.float32), kind=3)
    assert s.receive(grad).code == ErrorCode.CODEC_NOT_ALLOWED and s.state is State.JOINED


def test_a_gradient_with_hostile_commitments_is_refused_with_its_code_and_the_connection_stays():
    rt = make_runtime()
    s = session_for(rt)
    s.receive(join())
    grad = np.zeros(rt.param_count, np.float32).tobytes()
    kind6 = dict(project=1, count=4, kind=6)
    short = encode(MessageType.GRADIENT, payload=grad + b"\0" * 8, **kind6)
    assert s.receive(short).code == ErrorCode.COMMITMENT_LENGTH and s.state is State.JOINED
    # 4 examples in batches of 2 make 2 batches, not 1
    one = np.zeros(5, "<f4").tobytes()
    wrong = encode(MessageType.GRADIENT, payload=grad + np.array([2, 1, 4], "<u4").tobytes() + one, **kind6)
    assert s.receive(wrong).code == ErrorCode.COMMITMENT_MALFORMED and s.state is State.JOINED
    nan = np.array([0, 0, np.nan, 0, 0], "<f4").tobytes()
    bad = encode(MessageType.GRADIENT, payload=grad + np.array([4, 1, 4], "<u4").tobytes() + nan, **kind6)
    assert s.receive(bad).code == ErrorCode.NON_FINITE and s.state is State.JOINED
