"""The one access rule (mlitb/auth.py): who may read, own or administer a public or a private project."""

from types import SimpleNamespace

import pytest

from mlitb.auth import ADMIN, OWN, READ, allows, join_check, require, token_hash
from mlitb.errors import MlitbError

ADMIN_TOKEN, OWNER, INVITE = "admin-token", "owner-token", "invite-token"
HASHES = {"owner_hash": token_hash(OWNER), "invite_hash": token_hash(INVITE)}


@pytest.mark.parametrize("token,private,need,allowed", [
    (None, False, READ, True), ("stranger", False, READ, True),  # a public project: anyone reads and joins
    (None, True, READ, False), ("stranger", True, READ, False),
    (INVITE, True, READ, True), (OWNER, True, READ, True), (ADMIN_TOKEN, True, READ, True),
    (INVITE, False, OWN, False), ("stranger", False, OWN, False), (OWNER, False, OWN, True), (ADMIN_TOKEN, True, OWN, True),
    (OWNER, False, ADMIN, False), (INVITE, False, ADMIN, False), (ADMIN_TOKEN, False, ADMIN, True),
])
def test_who_may_read_own_or_administer(token, private, need, allowed):
    assert allows(token, need, admin_token=ADMIN_TOKEN, private=private, **HASHES) is allowed


def test_a_server_without_an_admin_token_has_no_admin():
    assert not allows("", ADMIN, admin_token=None) and not allows(None, ADMIN, admin_token=None)
    assert not allows("", OWN, admin_token="", owner_hash=token_hash(""))  # an empty token matches nothing


def test_a_refusal_says_whether_a_token_is_missing_or_wrong():
    with pytest.raises(MlitbError) as missing:
        require(None, OWN, "delete this project", admin_token=ADMIN_TOKEN, **HASHES)
    with pytest.raises(MlitbError) as wrong:
        require(INVITE, OWN, "delete this project", admin_token=ADMIN_TOKEN, **HASHES)
    assert (missing.value.code.name, wrong.value.code.name) == ("AUTH_REQUIRED", "FORBIDDEN")


def test_the_websocket_join_accepts_the_tokens_rest_accepts_for_reading():
    private = SimpleNamespace(spec=SimpleNamespace(private=True), **HASHES)
    may_join = join_check(ADMIN_TOKEN)
    assert [may_join(private, t) for t in (INVITE, OWNER, ADMIN_TOKEN, None, "stranger")] == [True, True, True, False,
                                                                                               False]
