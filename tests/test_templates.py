from __future__ import annotations

import msgspec
import pytest

from arrears_router import TemplateError, render, template_fields
from arrears_router.templates import check_templates, placeholders, sample_fields
from arrears_router.wire.envelope import Envelope, decode_payment
from arrears_router.wire.notifier import sample_payload

ENVELOPE = Envelope(appid="wx1", mch_id="m1", nonce_str="n", encrypted_data="", iv="")
FIELDS = template_fields(
    decode_payment(msgspec.json.encode(sample_payload("T1", total_fee=1205)), ENVELOPE)
)


def test_a_whole_placeholder_keeps_its_type() -> None:
    body = render({"amount": "{total_fee}", "orders": "{order_no}", "n": 3}, FIELDS)
    assert body == {"amount": 1205, "orders": ["OT1-1", "OT1-2"], "n": 3}


def test_text_with_placeholders_and_the_renderings_people_want() -> None:
    text = render("paid {yuan} yuan at {paid_at} for {order_nos} ({transaction_id})", FIELDS)
    assert text == "paid 12.05 yuan at 2026-11-25 09:30:15 for OT1-1,OT1-2 (T1)"


def test_nested_tables_and_lists() -> None:
    assert render({"a": [{"b": "{mch_id}-{repay_no}"}]}, FIELDS) == {"a": [{"b": "m1-RT1"}]}


@pytest.mark.parametrize("template", ["{phone}", "x {phone} y"])
def test_an_unknown_field_names_it_and_the_known_ones(template: str) -> None:
    with pytest.raises(TemplateError, match=r"unknown field \{phone\}; known: appid"):
        render(template, FIELDS)


def test_a_malformed_template_is_named() -> None:
    with pytest.raises(TemplateError, match=r"template 'x \{'"):
        render("x {", FIELDS)


def test_placeholders_are_the_field_names_a_template_uses() -> None:
    template = "{yuan} for {order[0]} and {order.0} of {repay_no}; {{not_one}}"
    assert placeholders(template) == {"yuan", "order", "repay_no"}
    assert placeholders("no fields") == frozenset()
    with pytest.raises(TemplateError, match=r"template 'x \{'"):
        placeholders("x {")


def test_the_sample_has_every_field_a_payment_has() -> None:
    assert set(sample_fields()) == set(FIELDS)
    assert {type(value) for value in sample_fields().values()} <= {str, int, list}


def test_templates_checked_at_load_name_the_key_that_fails() -> None:
    check_templates({"body": {"fee": "{total_fee}"}, "message": "{yuan}"}, sample_fields())
    with pytest.raises(TemplateError, match=r"^message: unknown field \{yuann\}; known: "):
        check_templates({"body": {"fee": "{total_fee}"}, "message": "{yuann}"}, sample_fields())
    with pytest.raises(TemplateError, match=r"^headers: template '\{rider': "):
        check_templates({"headers": {"X-Rider": "{rider"}}, sample_fields())
