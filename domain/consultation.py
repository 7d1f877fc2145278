"""Does a complaint's text say that several parties must agree (协商) before anyone can act?

The catalogue marks whole categories as needing consultation (a property dispute, a leak between flats), but
callers describe consultation matters in categories that normally do not need it: residents who disagree about
a lift retrofit, owners and the property company at odds over the parking, a homeowners' committee against the
residents. Such a ticket sent to one unit comes back; sent to manual triage it waits for an operator who can
only convene the same consultation. So triage reads the text too.

The rule needs two things in the text, never one:
* who: several parties (业主, 居民, 业委会, 物业, 邻居, 多方, "residents", "owners", "homeowners' committee") or a
  matter that by law needs the owners' collective consent (加装电梯: a lift retrofit needs two thirds of the
  owners; 动用维修基金: the maintenance fund likewise);
* a disagreement or a call to agree (意见不一, 矛盾, 纠纷, 协商, 谈不拢, "disagree", "cannot agree", "dispute").
One alone is a near miss: "电梯坏了请物业修" names a party and no disagreement; "和商家协商退款" negotiates with a
shop, not among residents; "我多方打听" is not several parties. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ConsultationCue", "consultation_cue"]

# Parties whose agreement a public matter may need, and matters that need the owners' collective consent.
_PARTIES_ZH = ("业主", "居民", "住户", "业委会", "业主委员会", "物业", "邻居", "楼上楼下", "多方", "各方", "双方")
_CONSENT_MATTERS_ZH = ("加装电梯", "增设电梯", "安装电梯", "电梯加装", "维修基金", "维修资金", "老旧小区改造")
_DISAGREEMENT_ZH = ("意见不一", "意见不统一", "意见分歧", "有分歧", "矛盾", "纠纷", "争议", "协商", "协调不下",
                    "谈不拢", "谈不妥", "达不成一致", "不同意", "反对", "僵持", "吵起来", "闹僵")

# Plural residents and owners: "I am a resident and dispute the fine" is one party, not several.
_PARTIES_EN = (r"homeowners'? (?:association|committee)", r"owners'? (?:association|committee)", r"residents",
               r"neighbou?rs?", r"(?:home)?owners", r"tenants", r"property (?:company|management|manager)",
               r"building manager", r"several parties", r"all parties", r"both sides", r"every household",
               r"households")
_CONSENT_MATTERS_EN = (r"lift retrofit", r"elevator retrofit", r"(?:install|add|adding|installing|retrofit(?:ting)?) "
                       r"(?:a |an )?(?:new )?(?:lift|elevator)", r"maintenance fund")
_DISAGREEMENT_EN = (r"disagree(?:s|d|ment)?", r"(?:can ?not|can't|could not|couldn't|do not|don't|won't) agree",
                    r"no agreement", r"dispute[sd]?", r"in conflict", r"conflict between", r"at odds",
                    r"object(?:s|ed)? to", r"oppose[sd]?", r"negotiat(?:e|ion)", r"mediat(?:e|ion)", r"split over",
                    r"divided (?:over|on|about)")


def _english(patterns: tuple[str, ...]) -> re.Pattern[str]:
    # Whole words only: "owners" must not fire inside "downers", "oppose" not inside "opposite".
    return re.compile(r"\b(?:" + "|".join(patterns) + r")\b")


_PARTY_EN, _MATTER_EN, _DISAGREE_EN = map(_english, (_PARTIES_EN, _CONSENT_MATTERS_EN, _DISAGREEMENT_EN))


@dataclass(frozen=True)
class ConsultationCue:
    """Why the text needs consultation: the phrases that said who and the ones that said they disagree."""

    who: tuple[str, ...]
    disagreement: tuple[str, ...]

    @property
    def reason(self) -> str:
        """One line for the event: which cues matched."""
        return f"the text says several parties must agree: {' / '.join(self.who)} + {' / '.join(self.disagreement)}"


def consultation_cue(text: str) -> ConsultationCue | None:
    """The cues that make ``text`` a consultation matter, or None when it is not one (or only half of one)."""
    lowered = " ".join((text or "").lower().split())
    who = _found_zh(lowered, _PARTIES_ZH + _CONSENT_MATTERS_ZH) + _found_en(lowered, _PARTY_EN, _MATTER_EN)
    if not who:
        return None
    disagreement = _found_zh(lowered, _DISAGREEMENT_ZH, _NEGATED_ZH) + _found_en(lowered, _DISAGREE_EN, negated=_NEGATED_EN)
    return ConsultationCue(who=who, disagreement=disagreement) if disagreement else None


# "邻居之间没有矛盾", "there is no dispute": a denied disagreement is none.
_NEGATED_ZH = re.compile(r"(?:没有|没什么|没|无|并无|不存在)$")
_NEGATED_EN = re.compile(r"\b(?:no|not|without|never)\s+$")


def _found_zh(text: str, phrases: tuple[str, ...], negated: re.Pattern[str] | None = None) -> tuple[str, ...]:
    hits = [p for p in phrases if any(_stands(text, m.start(), negated, 4) for m in re.finditer(re.escape(p), text))]
    # A phrase inside a longer one found too ("业主委员会" also holds "业主") is reported once, as the longer.
    return tuple(p for p in hits if not any(p != q and p in q for q in hits))


def _found_en(text: str, *patterns: re.Pattern[str], negated: re.Pattern[str] | None = None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.group(0) for pattern in patterns for m in pattern.finditer(text)
                               if _stands(text, m.start(), negated, 10)))


def _stands(text: str, start: int, negated: re.Pattern[str] | None, window: int) -> bool:
    """The match at ``start`` is not denied by the words just before it."""
    return negated is None or negated.search(text[max(0, start - window):start]) is None
