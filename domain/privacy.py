"""Personal data rules shared by the services: how a phone is masked, how a caller's pseudonym is made,
and how phone and resident ID numbers inside free text are masked. Pure: no I/O, no secrets of its own.

Masks keep at most the first 3 and the last 4 digits of a phone (the mobile operator's prefix and what
a caller recognises as theirs): 138****5678; at least 4 digits are always hidden. A resident ID number
keeps its first 6 digits (the issuing area) and its last 4 (the checksum, 'X' included); the birth date
in between is what identifies.
Pseudonyms are keyed hashes (HMAC-SHA256): without the key a pseudonym cannot be recomputed from a
guessed number, however few digits a mask leaves to guess.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PSEUDONYM_LENGTH = 16  # hex characters (64 bits): collisions are negligible among one city's callers


def phone_digits(phone: str | None) -> str:
    """The digits of a phone number as dialled, so '138 1234-5678' and '13812345678' are one caller.
    A leading +86 / 0086 country code is dropped: it is the same line."""
    digits = "".join(c for c in phone or "" if c.isdigit())
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) in (11, 10, 12):
            return digits[len(prefix):]
    return digits


def mask_digits(digits: str) -> str:
    """At most the first 3 and last 4 digits stay, and at least 4 are always hidden: shorter numbers
    show less (a short number is guessed faster, so it must reveal less of itself)."""
    n = len(digits)
    shown = max(0, min(7, n - 4))
    head = min(3, shown // 2)
    tail = shown - head
    return digits[:head] + "*" * (n - shown) + (digits[n - tail:] if tail else "")


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return None
    return mask_digits(phone_digits(phone))


def pseudonym(key: str, value: str, *, purpose: str = "caller") -> str:
    """A keyed hash of `value`: stable for one key, useless without it. `purpose` keeps hashes made for
    different uses (the caller's pseudonym, the key store's lookup) from being the same string."""
    return hmac.new(key.encode(), f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_LENGTH]


# ---------------------------------------------------------------- numbers inside free text

# A digit run may be split by spaces or dashes as people write numbers ("138 1234 5678", "0571-8888 6666").
_SEP = r"[ \u00a0\-－]?"
_NOT_DIGIT_BEFORE = r"(?<![0-9０-９])"
_NOT_DIGIT_AFTER = r"(?![0-9０-９])"
# 18-digit resident ID (居民身份证): 6-digit area, birth date 19xx/20xx MMDD, 3-digit sequence, check digit or X.
_RESIDENT_ID = re.compile(
    _NOT_DIGIT_BEFORE + r"[1-9]\d{5}" + _SEP + r"(?:19|20)\d{2}" + _SEP + r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
    + _SEP + r"\d{3}[0-9Xx]" + r"(?![0-9A-Za-z])")
# Mainland mobile: 1[3-9]x xxxx xxxx, optionally after +86 / 0086.
_MOBILE = re.compile(
    r"(?:(?:\+|00)86" + _SEP + r")?" + _NOT_DIGIT_BEFORE + r"1[3-9]\d" + _SEP + r"\d{4}" + _SEP + r"\d{4}" + _NOT_DIGIT_AFTER)
# Landline with its area code: 0 + 2-3 digit area code, then a 7-8 digit number, optionally in parentheses.
_LANDLINE = re.compile(
    _NOT_DIGIT_BEFORE + r"(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3})" + _SEP + r"[2-9]\d{2,3}" + _SEP + r"\d{4}" + _NOT_DIGIT_AFTER)


def _mask_match(match: re.Match[str], keep_head: int, keep_tail: int) -> str:
    """Mask the digits of a match, keeping its separators' positions out: the masked number is one run."""
    chars = [c for c in match.group(0) if c.isalnum()]
    n = len(chars)
    return "".join(chars[:keep_head]) + "*" * (n - keep_head - keep_tail) + "".join(chars[n - keep_tail:])


def _mask_number(match: re.Match[str]) -> str:
    digits = phone_digits(match.group(0))
    return mask_digits(digits)


def mask_free_text(text: str, *, names: tuple[str, ...] = ()) -> str:
    """`text` with every resident ID number, mobile and landline number masked, and each of `names`
    (the caller's own name, when they say it) replaced by asterisks. Dates, amounts, house numbers and
    the like are left alone: a match needs a number's exact shape (prefix, length, no digit touching it)."""
    out = _RESIDENT_ID.sub(lambda m: _mask_match(m, 6, 4), text)
    out = _MOBILE.sub(_mask_number, out)
    out = _LANDLINE.sub(_mask_number, out)
    for name in names:
        out = _mask_name(out, name.strip())
    return out


def _mask_name(text: str, name: str) -> str:
    """A Chinese name (two characters or more) wherever it appears; a Latin-script name as a whole word
    only, so that 'Li' leaves 'Light' alone. One letter or character would mask too much: left alone."""
    if len(name) < 2:
        return text
    if name.isascii():
        return re.sub(rf"(?<![A-Za-z]){re.escape(name)}(?![A-Za-z])", "*" * len(name), text, flags=re.IGNORECASE)
    return text.replace(name, "*" * len(name))
