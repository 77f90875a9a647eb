from __future__ import annotations

import msgspec
import pytest

from arrears_router import TemplateError, render, template_fields
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
