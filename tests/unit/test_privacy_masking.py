"""Personal data in what intake lets out: masked phones (at most 3 + 4 digits), keyed pseudonyms, and phone
and resident ID numbers inside free text masked in real-looking Chinese sentences, with no false masking."""

from __future__ import annotations

import pytest

from domain.privacy import mask_free_text, mask_phone, pseudonym


@pytest.mark.parametrize("phone, masked", [
    ("13812345678", "138****5678"),
    ("138 1234 5678", "138****5678"),
    ("+86 138-1234-5678", "138****5678"),
    ("057188886666", "057*****6666"),   # landline with its area code: still at most 3 + 4
    ("88886666", "88****66"),          # shorter numbers show less
    ("12345", "****5"),
    ("1234", "****"),
    (None, None),
])
def test_a_masked_phone_shows_at_most_the_first_3_and_last_4_digits(phone, masked):
    assert mask_phone(phone) == masked


def test_a_mask_reveals_at_most_seven_digits_and_hides_at_least_four():
    for n in range(1, 16):
        digits = "9" * n
        assert sum(c.isdigit() for c in mask_phone(digits) or "") <= min(7, max(0, n - 4)), n


def test_a_pseudonym_is_a_keyed_hash():
    assert pseudonym("k1", "13812345678") == pseudonym("k1", "13812345678")
    assert pseudonym("k1", "13812345678") != pseudonym("k2", "13812345678")
    assert pseudonym("k1", "13812345678") != pseudonym("k1", "13812345678", purpose="key-store")
    assert len(pseudonym("k1", "x")) == 16 and "5678" not in pseudonym("k1", "13812345678")


@pytest.mark.parametrize("text, masked", [
    ("我的电话是13812345678，请尽快回电。", "我的电话是138****5678，请尽快回电。"),
    ("联系人手机 138 1234 5678 或 139-8765-4321", "联系人手机 138****5678 或 139****4321"),
    ("请拨打+86 13812345678联系", "请拨打138****5678联系"),
    ("物业电话0571-88886666，打了没人接", "物业电话057*****6666，打了没人接"),
    ("座机（021）6888 1234", "座机021****1234"),
    ("身份证号330106199001011234，社保卡办不下来", "身份证号330106********1234，社保卡办不下来"),
    ("我的身份证 11010519491231002X 丢了", "我的身份证 110105********002X 丢了"),
    ("身份证33010619900101123x", "身份证330106********123x"),
])
def test_numbers_in_chinese_sentences_are_masked(text, masked):
    assert mask_free_text(text) == masked


@pytest.mark.parametrize("text", [
    "2025-11-03下午三点开始停水，到2025年11月4日还没来",
    "物业费每月收了1380元，比合同多了200元",
    "桂花路88号3栋2单元1502室楼道灯坏了",
    "订单号2025110312345678901234的退款没到账",          # too long for any number: no partial masking
    "工单号T-0A1B2C3D4E5F6789，上次反映过",
    "这条路限速60，晚上10点以后大货车很多",
    "身高175cm，体重65kg",
    "邮编310006",
    "电表读数013812，上月012300",
])
def test_dates_amounts_house_numbers_and_other_numbers_are_left_alone(text):
    assert mask_free_text(text) == text


def test_the_callers_own_name_is_masked_in_the_text():
    assert mask_free_text("我叫王小明，电话13812345678", names=("王小明",)) == "我叫***，电话138****5678"
    assert mask_free_text("王", names=("王",)) == "王"  # a one-character name would mask every such character


def test_a_latin_name_is_masked_as_a_word_only():
    assert mask_free_text("Li called: the light on Li Road is out", names=("Li",)) == "** called: the light on ** Road is out"
    assert mask_free_text("demo feed: a demonstration", names=("demo",)) == "**** feed: a demonstration"
