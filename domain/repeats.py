"""Repeat detection (并单): is a new complaint the same problem, at the same place, as an open ticket?

Callers who report the same broken lamp use different words ("路灯不亮" / "街灯坏了，晚上黑漆漆的" /
"street lamp out"), so raw character bigrams miss most real repeats. Three things make the text comparison
survive paraphrase, all offline (no downloaded model):

* the domain's synonyms: every way a caller names a thing the hotline handles is rewritten to one
  canonical word (街灯, 路边的灯, streetlight, lamp post -> 路灯) before comparing;
* concepts: each canonical word also adds a concept token (``#light``), so a Chinese and an English
  complaint about the same lamp still share a feature;
* TF-IDF weights: words every complaint uses ("请尽快处理", "小区", "please") weigh little; the idf is
  counted over the catalogue's seed sentences, which are exactly that kind of filler around each keyword.

The category (an operator's, triage's, or the classifier's guess at registration) is a gate: two confident,
different categories are different problems whatever the words. Place and time are gates too.
Pure: no I/O.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# concept -> the words callers use for it (the first one is the canonical word the others are rewritten to).
# Chinese first, then English. Longer variants are matched first, so "路灯杆" is not read as "路灯" + "杆".
CONCEPTS: dict[str, tuple[str, ...]] = {
    "light": ("路灯", "街灯", "路边的灯", "路边灯", "灯杆", "照明灯", "马路灯", "楼道灯", "灯泡", "灯不亮", "灯坏",
              "street light", "streetlight", "street lamp", "streetlamp", "lamp post", "lamppost", "light pole", "lamp"),
    "dark": ("黑", "不亮", "熄灭", "灭了", "没亮", "dark", "out", "not working"),
    "bin": ("垃圾桶", "垃圾箱", "垃圾筒", "果皮箱", "垃圾", "bin", "trash can", "garbage can", "litter basket", "dumpster",
            "trash", "garbage", "rubbish", "litter"),
    "overflow": ("满溢", "满了", "溢出", "堆满", "装不下", "冒出来", "漫出来", "没人清", "没人收", "没人清理", "没清运", "不清运",
                 "overflowing", "overflow", "full", "not collected", "piled up", "uncollected"),
    "noise": ("噪音", "噪声", "吵", "太响", "声音很大", "扰民", "动静", "音响", "喇叭", "noise", "noisy", "loud"),
    "dance": ("广场舞", "跳舞", "dance", "dancing"),
    "music": ("音乐", "唱歌", "music", "singing", "party"),
    "night": ("夜间", "半夜", "晚上", "深夜", "凌晨", "夜里", "night", "midnight"),
    "construction": ("施工", "工地", "装修", "打桩", "construction", "building site", "renovation", "drilling"),
    "dust": ("扬尘", "灰尘", "尘土", "粉尘", "dust"),
    "pothole": ("坑洼", "坑", "塌陷", "路面破损", "路面坏", "破损", "pothole", "hole", "cave in"),
    "road": ("马路", "路面", "道路", "road", "street", "pavement"),
    "manhole": ("井盖", "窨井盖", "下水井盖", "manhole", "manhole cover", "sewer cover"),
    "missing": ("丢失", "不见了", "丢了", "被偷", "没了", "缺失", "missing", "stolen", "gone"),
    "leak": ("漏水", "渗水", "滴水", "冒水", "跑水", "爆管", "水管爆", "水管破", "leak", "leaking", "burst"),
    "pipe": ("水管", "管道", "自来水管", "pipe", "water main", "main"),
    "no_water": ("停水", "没水", "没有水", "断水", "水停了", "no water", "water outage", "water off"),
    "power": ("停电", "没电", "断电", "跳闸", "power cut", "power outage", "no power", "blackout"),
    "heating": ("暖气", "供暖", "暖气片", "不热", "冰凉", "heating", "heat", "radiator", "hot water"),
    "elevator": ("电梯", "升降梯", "elevator", "lift"),
    "stuck": ("困人", "关人", "卡住", "停运", "坏了", "故障", "stuck", "broken", "out of order", "broke"),
    "parking": ("乱停", "违停", "违章停车", "乱停车", "停车", "占道停", "挡住", "堵住", "parking", "parked", "double parked",
                "blocked", "blocking"),
    "vendor": ("摆摊", "小贩", "流动摊", "占道经营", "摊贩", "vendor", "stall", "hawker"),
    "fumes": ("油烟", "油烟味", "排烟", "烟味", "fumes", "smoke", "cooking smell"),
    "smell": ("臭", "异味", "气味", "恶臭", "smell", "odor", "odour", "stink"),
    "sewer": ("下水道", "污水", "排水", "化粪池", "堵塞", "堵了", "反水", "返水", "sewer", "drain", "sewage", "clogged"),
    "tree": ("树", "树枝", "大树", "树木", "tree", "branch", "limb"),
    "fallen": ("倒", "倒伏", "折断", "断了", "压", "fallen", "down", "fell"),
    "dog": ("流浪狗", "野狗", "狗", "犬", "stray dog", "dog", "dogs"),
    "signal": ("红绿灯", "信号灯", "交通灯", "traffic light", "traffic signal", "signal"),
    "illegal_building": ("违建", "违章建筑", "私搭乱建", "加盖", "搭建", "illegal construction", "illegal structure"),
    "restaurant": ("饭店", "餐馆", "饭馆", "餐厅", "烧烤", "restaurant", "eatery", "bbq", "barbecue"),
    "graffiti": ("涂鸦", "乱涂", "小广告", "graffiti"),
}

_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[a-z][a-z0-9]+")
# Chinese filler that says nothing about the problem (the idf lowers the rest).
_STOP_CJK = set("的了吗呢吧啊呀着过是在有我们你他她它这那就都也还又很太把被给让请")


def _variants() -> list[tuple[str, str, str]]:
    """(variant, canonical, concept), longest variant first; Latin variants matched on word boundaries."""
    rows = [(variant, words[0], concept) for concept, words in CONCEPTS.items() for variant in words]
    return sorted(rows, key=lambda r: -len(r[0]))


_VARIANTS = _variants()
_LATIN_VARIANT = re.compile(r"\b(" + "|".join(re.escape(v) for v, _, _ in _VARIANTS if v.isascii()) + r")\b")
_CJK_VARIANTS = [(v, c, k) for v, c, k in _VARIANTS if not v.isascii()]
_CONCEPT_OF_LATIN = {v: k for v, _, k in _VARIANTS if v.isascii()}


def normalise(text: str) -> str:
    """NFKC (full-width -> half-width), lower case, punctuation -> space."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return re.sub(r"[^\w]+", " ", text).strip()


def features(text: str) -> Counter[str]:
    """The words and concepts of a complaint: concept tokens (``#light``) for every domain word found, Chinese
    character uni- and bigrams of what remains, Latin words (crudely singular) and word pairs."""
    normalised = normalise(text)
    out: Counter[str] = Counter()
    for match in _LATIN_VARIANT.finditer(normalised):
        out["#" + _CONCEPT_OF_LATIN[match.group(1)]] += 1
    rest = _LATIN_VARIANT.sub(" ", normalised)
    for variant, _canonical, concept in _CJK_VARIANTS:
        if variant in rest:
            out["#" + concept] += rest.count(variant)
            rest = rest.replace(variant, " ")
    for run in re.findall(r"[\u4e00-\u9fff]+", rest):
        chars = [c for c in run if c not in _STOP_CJK]
        out.update(chars)
        out.update(a + b for a, b in zip(chars, chars[1:]))
    words = [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in _LATIN_WORD.findall(rest)]
    out.update(words)
    out.update(f"{a} {b}" for a, b in zip(words, words[1:]))
    return out


# Concept tokens carry the meaning paraphrases share: each counts as much as several rare words
# (measured with `cityops discover repeats`: 2.5 and 4 missed more paraphrases, precision unchanged).
CONCEPT_WEIGHT = 6.0


@dataclass(frozen=True)
class TextSimilarity:
    """Cosine of TF-IDF vectors over `features`; idf counted over a corpus of complaint sentences."""

    idf: Mapping[str, float] = field(default_factory=dict)
    default_idf: float = 1.0

    @classmethod
    def fit(cls, corpus: Iterable[str]) -> TextSimilarity:
        documents = 0
        df: Counter[str] = Counter()
        for text in corpus:
            documents += 1
            df.update(set(features(text)))
        if not documents:
            return cls()
        idf = {term: math.log((1 + documents) / (1 + n)) + 1 for term, n in df.items()}
        # A word the corpus never saw is mostly a caller's own detail ("走路", "老人"), not the problem: the
        # median weight, not the rarest word's, or such details outweigh the shared concepts.
        return cls(idf=idf, default_idf=sorted(idf.values())[len(idf) // 2])

    def vector(self, text: str) -> dict[str, float]:
        weights = {}
        for term, count in features(text).items():
            weight = (1 + math.log(count)) * self.idf.get(term, self.default_idf)
            weights[term] = weight * CONCEPT_WEIGHT if term.startswith("#") else weight
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {t: w / norm for t, w in weights.items()} if norm else {}

    @staticmethod
    def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
        if len(a) > len(b):
            a, b = b, a
        return min(1.0, sum(w * b.get(t, 0.0) for t, w in a.items()))

    def __call__(self, a: str, b: str) -> float:
        return self.cosine(self.vector(a), self.vector(b))


# ---------------------------------------------------------------------------- place, time, category


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


def address_key(address: str | None) -> str:
    """An address as callers vary it least: no spaces, punctuation or case."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", address or "").lower())


@dataclass(frozen=True)
class Complaint:
    """What repeat detection looks at of a ticket."""

    ticket_id: str
    text: str
    submitted_at: datetime
    category: str | None = None  # an operator's or triage's category, or the classifier's confident guess
    grid: str | None = None
    address: str | None = None
    lat: float | None = None
    lon: float | None = None


def same_place(a: Complaint, b: Complaint, radius_m: float) -> bool:
    """Coordinates when both have them (within the radius); else the address when both give one (the same,
    or one naming a spot inside the other: "幸福路12号" / "幸福路12号北门"); else the same grid."""
    if a.lat is not None and a.lon is not None and b.lat is not None and b.lon is not None:
        return distance_m(a.lat, a.lon, b.lat, b.lon) <= radius_m
    ka, kb = address_key(a.address), address_key(b.address)
    if ka and kb:
        return ka.startswith(kb) or kb.startswith(ka)
    return a.grid is not None and a.grid == b.grid


@dataclass(frozen=True)
class RepeatRules:
    window: timedelta = timedelta(hours=72)
    min_similarity: float = 0.45  # when a category is unknown: the text alone must say it is the same problem
    min_similarity_same_category: float = 0.2  # both of one category: the text need only not contradict it
    radius_m: float = 150.0

    def threshold(self, a: Complaint, b: Complaint) -> float:
        return self.min_similarity_same_category if a.category and a.category == b.category else self.min_similarity


@dataclass(frozen=True)
class RepeatMatch:
    master_ticket_id: str
    similarity: float
    reason: str


def find_master(new: Complaint, candidates: Iterable[Complaint], similarity: TextSimilarity,
                rules: RepeatRules) -> RepeatMatch | None:
    """The open ticket this complaint repeats, if any: same place, within the window, not of another category
    (when both are known), and similar enough text. The most similar wins; ties go to the oldest."""
    best: RepeatMatch | None = None
    new_vector = similarity.vector(new.text)
    for c in sorted(candidates, key=lambda c: c.submitted_at):
        if c.ticket_id == new.ticket_id or abs(new.submitted_at - c.submitted_at) > rules.window:
            continue
        if new.category and c.category and new.category != c.category:
            continue
        if not same_place(new, c, rules.radius_m):
            continue
        score = similarity.cosine(new_vector, similarity.vector(c.text))
        if score >= rules.threshold(new, c) and (best is None or score > best.similarity):
            same = f"same category {new.category or c.category}, " if (new.category or c.category) else ""
            best = RepeatMatch(c.ticket_id, round(score, 3),
                               f"same place, {same}text similarity {score:.2f}, {abs(new.submitted_at - c.submitted_at)} apart")
    return best


# ---------------------------------------------------------------------------- measuring it on a labelled set


@dataclass(frozen=True)
class LabelledComplaint:
    """One row of a labelled repeat set: complaints of one `scenario` with the same `group` are one problem."""

    source: str
    scenario: str
    group: str
    complaint: Complaint


@dataclass(frozen=True)
class PairCounts:
    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    true_negative: int = 0

    def __add__(self, other: PairCounts) -> PairCounts:
        return PairCounts(self.true_positive + other.true_positive, self.false_positive + other.false_positive,
                          self.false_negative + other.false_negative, self.true_negative + other.true_negative)

    @property
    def precision(self) -> float:
        predicted = self.true_positive + self.false_positive
        return self.true_positive / predicted if predicted else 1.0

    @property
    def recall(self) -> float:
        actual = self.true_positive + self.false_negative
        return self.true_positive / actual if actual else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class RepeatDecision:
    ticket_id: str
    master_ticket_id: str | None
    similarity: float | None


def replay(complaints: list[Complaint], similarity: TextSimilarity, rules: RepeatRules) -> list[RepeatDecision]:
    """What discover decides for these complaints arriving in time order: each is merged into an open master
    (a ticket not merged itself) or becomes one."""
    masters: list[Complaint] = []
    decisions = []
    for c in sorted(complaints, key=lambda c: (c.submitted_at, c.ticket_id)):
        match = find_master(c, masters, similarity, rules)
        if match is None:
            masters.append(c)
        decisions.append(RepeatDecision(c.ticket_id, match.master_ticket_id if match else None,
                                        match.similarity if match else None))
    return decisions


def pair_counts(rows: list[LabelledComplaint], decisions: list[RepeatDecision]) -> PairCounts:
    """Pairwise agreement of one scenario: two complaints are predicted together when they share a master
    (or one is the other's master), truly together when they share a group."""
    cluster = {d.ticket_id: d.master_ticket_id or d.ticket_id for d in decisions}
    group = {r.complaint.ticket_id: r.group for r in rows}
    ids = sorted(group)
    tp = fp = fn = tn = 0
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            predicted, actual = cluster[a] == cluster[b], group[a] == group[b]
            tp += predicted and actual
            fp += predicted and not actual
            fn += actual and not predicted
            tn += not predicted and not actual
    return PairCounts(tp, fp, fn, tn)


def measure(rows: Iterable[LabelledComplaint], similarity: TextSimilarity, rules: RepeatRules) -> dict[str, PairCounts]:
    """Pair counts per source of the labelled set, and over all of it (key "all")."""
    scenarios: dict[tuple[str, str], list[LabelledComplaint]] = {}
    for row in rows:
        scenarios.setdefault((row.source, row.scenario), []).append(row)
    totals: dict[str, PairCounts] = {}
    for (source, _), members in sorted(scenarios.items()):
        counts = pair_counts(members, replay([m.complaint for m in members], similarity, rules))
        totals[source] = totals.get(source, PairCounts()) + counts
        totals["all"] = totals.get("all", PairCounts()) + counts
    return totals
