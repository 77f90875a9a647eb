"""Property: whatever is POSTed, the real server answers HTTP 200 with a refusal it can explain."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Router, reply_of

ENVELOPE_KEYS = ("appid", "mch_id", "nonce_str", "encrypted_data", "iv", "sign")

fuzz_settings = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _assert_refused(router: Router, body: bytes) -> dict[str, Any]:
    reply = reply_of(router.post_raw(body))  # HTTP 200, JSON object, int errcode, str errmsg
    assert reply["errcode"] != 0, reply
    assert set(reply) <= {"errcode", "errmsg", "nonce_str"}, reply
    return reply


@fuzz_settings
@given(body=st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_with_http_200_json(module_router: Router,
                                                        body: bytes) -> None:
    _assert_refused(module_router, body)


@st.composite
def json_objects(draw: st.DrawFn, router: Router) -> dict[str, Any]:
    """Arbitrary objects; some carry envelope keys, with real merchant ids and a valid sign."""
    obj: dict[str, Any] = draw(st.dictionaries(st.text(max_size=12), json_values, max_size=8))
    for key in draw(st.lists(st.sampled_from(ENVELOPE_KEYS), unique=True)):
        obj[key] = draw(st.text(max_size=40) | json_values)
    if draw(st.booleans()):
        notifier = draw(st.sampled_from([router.hmac, router.md5, router.md5_hmac]))
        obj.update(appid=notifier.appid, mch_id=notifier.mch_id)
        if draw(st.booleans()):
            obj["sign"] = notifier.sign(obj)
    return obj


@fuzz_settings
@given(data=st.data())
def test_arbitrary_json_objects_are_refused_with_http_200_json(module_router: Router,
                                                               data: st.DataObject) -> None:
    obj = data.draw(json_objects(module_router))
    reply = _assert_refused(module_router, msgspec.json.encode(obj))
    if isinstance(obj.get("nonce_str"), str) and reply["errcode"] != 41300:
        assert reply.get("nonce_str") == obj["nonce_str"]


@fuzz_settings
@given(payload=st.dictionaries(st.text(max_size=16), json_values, max_size=10),
       sign_with=st.sampled_from(["hmac", "md5", "md5_hmac"]))
def test_authentic_requests_with_arbitrary_payloads_are_quarantined(
    module_router: Router, payload: dict[str, Any], sign_with: str
) -> None:
    """Signed and encrypted correctly, but no valid payment inside: 40005, never an error."""
    notifier = getattr(module_router, sign_with)
    reply = _assert_refused(module_router, notifier.notification(payload))
    assert reply["errcode"] == 40005, reply
