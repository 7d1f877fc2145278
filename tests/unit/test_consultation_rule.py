"""The consultation rule (domain/consultation.py) and what triage does with it: a text that says several parties
must agree goes to consult with its reason in TicketClassified, even when the classifier is unsure; half a cue
(a party without a disagreement, a negotiation with a shop) changes nothing."""

from __future__ import annotations

import pytest

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import build_example
from domain.catalogue import load_catalogue
from domain.classifier import Prediction
from domain.consultation import consultation_cue
from services.triage import domain
from tests.harness.pipeline import record_of, start
from tests.harness.workflow import KeywordClassifier, of_type, one

POSITIVES = [
    # the case: residents disagreeing about a lift retrofit
    "我们单元加装电梯，一楼和高层住户意见不一，一直谈不拢",
    "老小区想加装电梯，有人反对，希望社区组织协商",
    "业委会和物业矛盾很大，停车问题需要多方协商",
    "物业和居民因为小区停车位收费产生矛盾",
    "动用维修基金修屋顶，业主意见不统一",
    "楼上楼下因为漏水的事协商不成",
    "Residents disagree about the lift retrofit in our building",
    "The homeowners' committee and the property company cannot agree on who pays for the roof",
    "Owners in our block are divided over installing a lift, please mediate",
    "My neighbour and I have a dispute about the shared wall",
    "业主没有办法，和物业协商无果",  # a negation elsewhere does not deny the disagreement
]
NEAR_MISSES = [
    "小区电梯坏了，请物业尽快维修",  # a party, no disagreement
    "加装电梯工程施工噪音太大",  # a consent matter, no disagreement
    "和商家协商退款没有结果",  # a negotiation, but with a shop: one party
    "我多方打听也不知道该找哪个部门",  # 多方 as "everywhere", no disagreement
    "邻居半夜吵闹，影响休息",
    "垃圾几天没收，居民意见很大",
    "The lift in our building is broken, residents are stuck",
    "I am a resident and I dispute the parking fine",  # one resident is not several parties
    "Taxi driver overcharged me, I want to dispute the fare",
    "The store opposite my home plays loud music",  # "opposite" is not "oppose"
    "邻居之间没有矛盾，只是楼道灯坏了",  # a denied disagreement
    "Residents are not in conflict, the stair light is just broken",
    "There is no dispute among the owners, the roof leaks",
]


@pytest.mark.parametrize("text", POSITIVES)
def test_texts_that_need_several_parties_to_agree_are_recognised(text):
    cue = consultation_cue(text)
    assert cue is not None and cue.who and cue.disagreement
    assert all(phrase in text.lower() for phrase in (*cue.who, *cue.disagreement))


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_are_not(text):
    assert consultation_cue(text) is None


def test_the_reason_names_the_cues_once_and_the_longest_phrase():
    cue = consultation_cue("业主委员会和物业意见不一")
    assert cue is not None and cue.who == ("业主委员会", "物业") and cue.disagreement == ("意见不一",)
    assert cue.reason == "the text says several parties must agree: 业主委员会 / 物业 + 意见不一"


# ------------------------------------------------------------------ triage's decision (pure)

CATALOGUE = load_catalogue()
LIFT = "我们单元加装电梯，住户意见不一，一直谈不拢"


class Unsure:
    def __init__(self, category: str = "housing.shared-facility", confidence: float = 0.2) -> None:
        self.p = Prediction(category=category, confidence=confidence, alternatives=(("housing.property-dispute", 0.1),))

    def predict(self, text: str) -> Prediction:
        return self.p


def _ticket(text: str, category: str | None = None) -> ev.RegisteredTicket:
    return build_example(ev.TicketRegistered).ticket.model_copy(update={"text": text, "category": category, "proactive_rule": None})


def test_an_unsure_classifier_sends_a_consultation_matter_to_consult_not_to_manual_triage():
    choice = domain.choose_category(_ticket(LIFT), Unsure(), CATALOGUE, 0.35)
    assert (choice.category, choice.method) == ("housing.shared-facility", "model")
    assert choice.consultation_reason is not None and "加装电梯" in choice.consultation_reason
    assert "low confidence 0.20 < 0.35" in choice.consultation_reason


def test_without_a_cue_an_unsure_classifier_still_asks_an_operator():
    choice = domain.choose_category(_ticket("单元门坏了"), Unsure(), CATALOGUE, 0.35)
    assert choice.category is None and choice.reason == "low confidence 0.20 < 0.35"


def test_a_label_the_catalogue_lacks_goes_to_an_operator_even_with_a_cue():
    choice = domain.choose_category(_ticket(LIFT), Unsure("Elevator", 0.9), CATALOGUE, 0.35)
    assert choice.category is None and "not in the catalogue" in choice.reason


def test_the_text_convenes_a_consultation_in_a_category_that_does_not_need_one():
    category = "city-management.street-light"
    assert not CATALOGUE.category(category).needs_consultation
    c = domain.classified(_ticket(LIFT, category), category, 1.0, "operator", CATALOGUE,
                          consultation_reason=domain.text_consultation_reason(_ticket(LIFT)))
    assert c.needs_consultation and c.consultation_reason and "意见不一" in c.consultation_reason
    plain = domain.classified(_ticket("路灯不亮"), category, 1.0, "operator", CATALOGUE)
    assert not plain.needs_consultation and plain.consultation_reason is None


def test_the_catalogues_own_consultation_keeps_its_reason():
    c = domain.classified(_ticket("楼上漏水"), "housing.water-leak", 1.0, "operator", CATALOGUE)
    assert c.needs_consultation and c.consultation_reason == domain.CATALOGUE_REASON


# ------------------------------------------------------------------ through triage's real pipeline


class VersionedKeywords(KeywordClassifier):
    metadata = {"version": "kw-1"}


def _registered(ticket_id: str, text: str, category: str | None = None):
    data = build_example(ev.TicketRegistered).model_copy(update={"ticket": _ticket(text, category), "master_ticket_id": None})
    return record_of(Envelope.origin(data, source="/test", ticket_id=ticket_id))


def test_triage_routes_the_lift_dispute_to_consultation_and_says_why_and_which_model(tmp_path):
    svc = start("triage", tmp_path, classifier=VersionedKeywords())
    out = svc.feed([_registered("T-LIFT", LIFT), _registered("T-DUMP", "garbage everywhere"),
                    _registered("T-OP", "Residents disagree about the new bins", "city-management.garbage-collection")])
    lift = one(out, ev.TicketClassified, "T-LIFT").data
    assert lift.needs_consultation and lift.method == "model" and lift.model_version == "kw-1"
    assert "加装电梯" in (lift.consultation_reason or "") and "low confidence" in (lift.consultation_reason or "")
    dump = one(out, ev.TicketClassified, "T-DUMP").data
    assert not dump.needs_consultation and dump.consultation_reason is None and dump.model_version == "kw-1"
    operator = one(out, ev.TicketClassified, "T-OP").data
    assert operator.method == "operator" and operator.model_version is None
    assert operator.needs_consultation and "residents" in (operator.consultation_reason or "")
    assert not of_type(out, ev.ManualTriageRequested)


def test_no_seed_sentence_of_a_category_without_consultation_fires_the_rule():
    """The catalogue's own phrases for every category (its seed sentences, zh and en, in the callers' framing):
    the rule may fire only in categories that need consultation anyway, never convene one for a street light."""
    from domain.classifier import seed_examples

    examples = seed_examples(CATALOGUE)
    fired = [e for e in examples if consultation_cue(e.text)]
    wrong = [(e.category, e.text) for e in fired if not CATALOGUE.category(e.category).needs_consultation]
    assert fired and wrong == []
