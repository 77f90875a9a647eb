"""The kit for plugins that call out: what may be shown, URL checks and filling, JSON paths."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from arrears_router import PermanentError
from arrears_router.http import (
    body_excerpt,
    check_url,
    check_url_template,
    describe_error,
    display_url,
    fill_url,
    json_lookup,
    mask_openid,
    mask_phone,
    mask_phones_in,
    raise_for_status,
)
from arrears_router.templates import sample_fields

FIELDS = sample_fields()

# -- what may be shown


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:s3cret@hooks.example:8443/a/b?token=t0ken#part", "https://hooks.example:8443/a/b"),
    ("http://127.0.0.1:9/riders/{openid}/unblock?key={token}", "http://127.0.0.1:9/riders/{openid}/unblock"),
    (httpx.URL("http://u:p@h.example/x?phone=%2B8613800000000"), "http://h.example/x"),
    ("http://h.example/a@b", "http://h.example/a@b"),  # an @ in the path is no userinfo
    ("https://h.example", "https://h.example"),
    ("accounts.example/unblock?t=1", "accounts.example/unblock"),
])
def test_a_displayed_url_has_no_credentials_query_or_fragment(
    url: str | httpx.URL, shown: str
) -> None:
    assert display_url(url) == shown


@pytest.mark.parametrize(("openid", "masked"), [
    ("oRider0000000000000000000001", "oRid****0001"),
    ("o1234567890123", "o123****0123"),
    ("o12345678901", "****"),  # too short to show 8 of it
    ("", "****"),
])
def test_an_openid_is_masked_to_its_ends(openid: str, masked: str) -> None:
    assert mask_openid(openid) == masked


@pytest.mark.parametrize(("phone", "masked"), [
    ("+8613800000000", "+86138****0000"),
    ("13800000000", "138****0000"),
    ("12345678", "****"),
])
def test_a_phone_is_masked_in_the_middle(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(("error", "context", "described"), [
    (httpx.ConnectError("[Errno 111] Connection refused"), "",
     "ConnectError: [Errno 111] Connection refused"),
    (httpx.ConnectError("[Errno 111] Connection refused"), "cannot reach https://h.example/x",
     "ConnectError: cannot reach https://h.example/x: [Errno 111] Connection refused"),
    (httpx.ReadTimeout(""), "", "ReadTimeout"),
    (OSError(111, "Connection refused"), "",
     "ConnectionRefusedError: [Errno 111] Connection refused"),
    (httpx.InvalidURL("Invalid URL 'https://u:s3cret@h.example/x?token=t0ken'"), "",
     "InvalidURL: Invalid URL 'https://h.example/x'"),
    (ValueError("GET http://h.example/send?to=%2B8613800000000&key=t0ken failed"), "",
     "ValueError: GET http://h.example/send failed"),
])
def test_an_error_is_described_by_type_and_message_without_a_query_or_secret(
    error: BaseException, context: str, described: str
) -> None:
    assert describe_error(error, context) == described


def response(status: int, text: str, url: str = "https://u:s3cret@h.example/x?token=t0ken"
             ) -> httpx.Response:
    return httpx.Response(status, text=text, request=httpx.Request("GET", url))


def test_an_answer_is_quoted_by_its_first_500_characters() -> None:
    assert body_excerpt(response(500, "x" * 600)) == "x" * 500
    with pytest.raises(PermanentError) as caught:
        raise_for_status(response(400, "y" * 600))
    assert str(caught.value) == f"HTTP 400 from https://h.example/x: {'y' * 500}"


def test_an_answer_names_the_url_it_is_told_to() -> None:
    with pytest.raises(PermanentError, match=r"^HTTP 404 from https://h\.example/r/\{openid\}: "):
        raise_for_status(response(404, "no"), shown_url="https://h.example/r/{openid}")


# -- URLs


@pytest.mark.parametrize(("url", "error"), [
    ("ftp://hooks.example/", "url: 'ftp://hooks.example/' is not an http:// or https:// URL"
     " with a host"),
    ("hooks.example/arrears?token=s3cret", "url: 'hooks.example/arrears' is not an http:// or"
     " https:// URL with a host"),
    ("http:///arrears", "url: 'http:///arrears' is not an http:// or https:// URL with a host"),
    ("https://user:s3cret@hooks.example/", "url: has credentials in it; send them in `headers`"
     " instead"),
    ("https://hooks.example:port/", "url: not a valid URL: "),
])
def test_a_url_that_is_not_absolute_http_or_has_credentials_is_refused_naming_the_key(
    url: str, error: str
) -> None:
    with pytest.raises(ValueError, match=r"^url: ") as caught:
        check_url(url, "url")
    assert str(caught.value).startswith(error)
    assert "s3cret" not in str(caught.value)


def test_a_good_url_passes() -> None:
    check_url("https://hooks.example:8443/arrears?tenant=1", "url")
    check_url("http://127.0.0.1:9/", "url")


@pytest.mark.parametrize(("template", "error"), [
    ("https://accounts.example/riders/{rider}",
     "lookup.url: unknown field {rider}; known: appid, bank_type"),
    ("https://accounts.example/riders/{rider", "lookup.url: template "),
    ("{total_fee}", "lookup.url: '{total_fee}' is not an http:// or https:// URL with a host"),
    ("https://{out_user_id}:{openid}@accounts.example/",
     "lookup.url: has credentials in it"),
])
def test_a_url_template_is_checked_at_load_naming_the_key(template: str, error: str) -> None:
    with pytest.raises(ValueError, match=r"^lookup\.url: ") as caught:
        check_url_template(template, FIELDS, "lookup.url")
    assert str(caught.value).startswith(error)


def test_a_url_template_naming_known_fields_passes() -> None:
    check_url_template("https://accounts.example/riders/{out_user_id}/{order_no}?fee={yuan}",
                       FIELDS, "url")


def test_filled_fields_are_percent_encoded_so_they_stay_one_path_segment() -> None:
    fields: dict[str, Any] = {"rider": "../admin?x=1", "phone": "+8613800000000", "fee": 450}
    url = fill_url("https://h.example/r/{rider}/p?to={phone}&fen={fee}", fields)
    assert url == "https://h.example/r/..%2Fadmin%3Fx%3D1/p?to=%2B8613800000000&fen=450"
    assert fill_url("{fee}", fields) == "450"  # a whole placeholder, as text


def test_an_empty_field_in_a_url_is_permanent_and_nothing_is_filled() -> None:
    fields = {"rider": "", "openid": "", "fee": 0}
    with pytest.raises(PermanentError, match=r"^url: openid, rider is empty in this payment$"):
        fill_url("https://h.example/r/{rider}/{openid}/{fee}", fields)


# -- JSON answers


ANSWER: Any = {"result": {"code": 0, "items": [{"id": "a"}, {"id": None}], "ok": False},
               "0": "a key, not an index"}


@pytest.mark.parametrize(("path", "value"), [
    ("result.code", 0),
    ("result.items.0.id", "a"),
    ("result.items.1.id", None),  # a JSON null is found
    ("result.ok", False),
    ("0", "a key, not an index"),
    ("result", ANSWER["result"]),
])
def test_a_dotted_path_finds_keys_and_list_items(path: str, value: Any) -> None:
    assert json_lookup(ANSWER, path) == value


@pytest.mark.parametrize("path", [
    "result.missing", "result.items.2", "result.items.-1", "result.items.id",
    "result.code.more", "result.items.\u0661",  # an Arabic-Indic 1: a digit, not an index
    "",
])
def test_a_path_to_nothing_is_a_key_error_naming_it(path: str) -> None:
    with pytest.raises(KeyError) as caught:
        json_lookup(ANSWER, path)
    assert caught.value.args == (path,)


@pytest.mark.parametrize(("text", "shown"), [
    ("lookup found +8613800000000 for rider", "lookup found +86138****0000 for rider"),
    ("phone 13800000000.", "phone 138****0000."),
    ("86 138 0000 0000", "86138****0000"),
    ("+86-138-0000-0000", "+86138****0000"),
    ("order 4200000000000000000000000001", "order 4200000000000000000000000001"),
    ("id 13800000000123", "id 13800000000123"),
])
def test_phones_in_a_text_are_masked_and_longer_numbers_are_not(text: str, shown: str) -> None:
    assert mask_phones_in(text) == shown
