"""Reading WeChat's trade bill: both encodings, with and without its summary, refunds listed
apart, and every malformed bill refused whole, naming its line."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from arrears_router import CST
from arrears_router.reconcile.bill import Bill, BillError, read_bill, read_bill_file
from tests.reconcile.bills import (
    SUCCESS_COLUMNS,
    Trade,
    bill_bytes,
    bill_text,
    refund_of,
)

PAID = Trade("4200000001", "4.50", openid="oRiderA", out_trade_no="RA")
PAID_TOO = Trade("4200000002", "12.00", time="2026-11-25 23:59:59")
REVOKED = Trade("4200000003", "1.00", status="REVOKED")
TRADES = (PAID, PAID_TOO, refund_of(PAID), REVOKED)


def expected_trades(bill: Bill) -> list[tuple[int, str, str, int, int]]:
    return [(t.line, t.transaction_id, t.status, t.amount_fen, t.refund_fen)
            for t in bill.trades]


@pytest.mark.parametrize(("encoding", "bom"), [("utf-8", False), ("utf-8", True),
                                               ("gbk", False)])
def test_a_bill_reads_in_either_encoding_with_its_summary(encoding: str, bom: bool) -> None:
    bill = read_bill(bill_bytes(TRADES, encoding=encoding, bom=bom))

    assert bill.encoding == ("gbk" if encoding == "gbk" else "utf-8")
    assert expected_trades(bill) == [
        (2, "4200000001", "SUCCESS", 450, 0), (3, "4200000002", "SUCCESS", 1200, 0),
        (4, "4200000001", "REFUND", 450, 450), (5, "4200000003", "REVOKED", 100, 0),
    ]
    assert bill.summary is not None
    assert (bill.summary.trades, bill.summary.amount_fen, bill.summary.refund_fen) == (
        4, 1750, 450)
    first = bill.trades[0]
    assert (first.openid, first.out_trade_no, first.mch_id) == ("oRiderA", "RA", "1900000201")
    assert first.time == datetime(2026, 11, 25, 9, 30, 15, tzinfo=CST)
    assert bill.trades[2].refund_id == "50304200000001"
    assert [t.transaction_id for t in bill.payments] == ["4200000001", "4200000002"]


def test_gbk_is_read_as_gbk_not_mistaken_for_utf8() -> None:
    data = bill_bytes(TRADES, encoding="gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert read_bill(data).trades[0].transaction_id == "4200000001"


def test_a_bill_without_its_summary_still_reads() -> None:
    bill = read_bill(bill_bytes(TRADES, summary=False))
    assert bill.summary is None
    assert len(bill.trades) == 4


def test_columns_are_found_by_name_so_a_success_bill_reads_too() -> None:
    bill = read_bill(bill_text([PAID, PAID_TOO], columns=SUCCESS_COLUMNS).encode())
    assert expected_trades(bill) == [(2, "4200000001", "SUCCESS", 450, 0),
                                     (3, "4200000002", "SUCCESS", 1200, 0)]


def test_an_early_bill_names_the_settled_amount_total() -> None:
    columns = tuple("总金额" if c == "应结订单金额" else c for c in SUCCESS_COLUMNS)
    bill = read_bill(bill_text([PAID], columns=columns, summary=False).encode())
    assert bill.trades[0].amount_fen == 450


def test_crlf_lines_and_values_without_backticks_read_alike() -> None:
    plain = read_bill(bill_text(TRADES, backticks=False, newline="\r\n").encode())
    assert expected_trades(plain) == expected_trades(read_bill(bill_bytes(TRADES)))


def test_a_bill_with_no_trades_is_a_bill() -> None:
    bill = read_bill(bill_bytes(()))
    assert bill.trades == ()
    assert bill.summary is not None
    assert bill.summary.trades == 0


def test_the_bill_file_is_read_and_its_bytes_identified(tmp_path: Path) -> None:
    path = tmp_path / "bill.csv"
    path.write_bytes(bill_bytes(TRADES))
    assert read_bill_file(path).sha256 == read_bill(bill_bytes(TRADES)).sha256
    with pytest.raises(BillError, match="cannot read"):
        read_bill_file(tmp_path / "absent.csv")


# -- malformed bills: refused whole, the line named


def lines_of(trades: tuple[Trade, ...] = TRADES) -> list[str]:
    return bill_text(trades).split("\n")


def refused(lines: list[str]) -> str:
    with pytest.raises(BillError) as caught:
        read_bill("\n".join(lines).encode())
    return str(caught.value)


def test_a_wrong_header_is_refused_naming_the_missing_column() -> None:
    lines = lines_of()
    lines[0] = lines[0].replace("微信订单号", "订单号")
    assert refused(lines) == "line 1: not a trade bill's header: no column 微信订单号"


def test_another_csv_is_not_a_bill() -> None:
    message = refused(["date,amount", "2026-11-25,3.00"])
    assert message.startswith("line 1: not a trade bill's header: no column 交易时间, 商户号")


def test_a_truncated_line_is_refused_naming_it() -> None:
    lines = lines_of()
    lines[2] = lines[2][: len(lines[2]) // 2]
    assert refused(lines).startswith("line 3: ")
    assert "cut short" in refused(lines)


def test_a_bad_amount_is_refused_naming_line_and_column() -> None:
    lines = lines_of()
    lines[1] = lines[1].replace("`4.50", "`4.5", 1)
    assert refused(lines) == ("line 2: 应结订单金额 '4.5' is not an amount in yuan with two"
                              " decimals")


def test_a_bad_time_is_refused_naming_its_line() -> None:
    lines = lines_of()
    lines[3] = lines[3].replace("`2026-11-25 18:00:00", "`2026-11-31 18:00:00")
    assert refused(lines).startswith("line 4: 交易时间 '2026-11-31 18:00:00' is not a time")


def test_a_bill_cut_before_its_last_lines_fails_the_summary_count() -> None:
    lines = lines_of()
    del lines[4]  # the REVOKED line: the summary still counts it
    assert refused(lines) == ("line 6: the summary counts 4 trades, the bill has 3 lines of"
                              " them: it is incomplete")


def test_a_summary_of_other_amounts_is_refused() -> None:
    lines = lines_of()
    lines[6] = lines[6].replace("`17.50", "`17.00", 1)
    assert "totals 17.00 yuan settled, its lines 17.50" in refused(lines)


def test_a_summary_header_without_its_line_is_a_bill_cut_short() -> None:
    lines = lines_of()[:6]
    assert refused(lines).startswith("line 6: a summary header with no summary line")


def test_text_after_the_summary_is_refused() -> None:
    lines = [*lines_of()[:-1], "`more", ""]
    assert refused(lines) == "line 8: text after the summary"


def test_a_payment_listed_twice_is_refused() -> None:
    message = refused(lines_of((PAID, PAID_TOO, PAID)))
    assert message == "line 4: payment 4200000001 is on line 2 already"


def test_bytes_neither_utf8_nor_gbk_are_refused_naming_the_line() -> None:
    data = bill_bytes(TRADES).replace(b"OTHERS", b"\xff\xfe\xff", 1)
    with pytest.raises(BillError, match=r"^line 2: neither UTF-8 nor GBK"):
        read_bill(data)


def test_an_empty_file_is_not_a_bill() -> None:
    with pytest.raises(BillError, match=r"^line 1: empty"):
        read_bill(b"")
