"""Seeded residents' base data: houses in the city's buildings, households in houses, people in households.

The proportions follow an ageing coastal city (about a quarter over 60, 1.6 residents per house in the
article's 69,000 residents over 42,000 houses); the flags are rare as in life (about 6% registered disabled,
2% on the subsistence allowance, 4% of working age unemployed, a fifth of the over-70s living alone), and a
few newborns lack a household registration or medical insurance, so every rule has someone to find.
Same seed and `today`, same files.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from .records import DISABILITY_KINDS, RESIDENT_COLUMNS

HOUSE_COLUMNS = ("house_id", "grid_id", "building", "address", "lon", "lat")
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
            "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛阎段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉梅建国建华淑珍凤兰志强海燕红梅国华子涵浩然欣怡梓轩雨桐"
# (upper age, weight) bands: the share of residents up to that age
_AGE_BANDS = ((1, 0.8), (6, 4.0), (17, 11.0), (35, 22.0), (59, 36.0), (69, 14.0), (79, 8.0), (89, 3.5), (100, 0.7))


@dataclass(frozen=True)
class Site:
    """Where a house can be: a building in a grid."""

    grid_id: str
    building: str
    lon: float | None = None
    lat: float | None = None


def _birth(rng: random.Random, today: date) -> date:
    bands = [b for b, _ in _AGE_BANDS]
    upper = rng.choices(bands, weights=[w for _, w in _AGE_BANDS])[0]
    lower = 0 if upper == bands[0] else bands[bands.index(upper) - 1] + 1
    days = rng.randint(lower * 365, upper * 365 + 364)
    return today - timedelta(days=days)


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def _flags(rng: random.Random, born: date, today: date, alone: bool) -> dict[str, str]:
    age = (today - born).days // 365
    row: dict[str, str] = {c: "" for c in RESIDENT_COLUMNS[8:]}
    if rng.random() < 0.06:
        row["disability_kind"] = rng.choice(DISABILITY_KINDS)
        row["disability_grade"] = str(rng.choice((1, 2, 2, 3, 3, 4, 4, 4)))
    if rng.random() < 0.02 + (0.1 if row["disability_kind"] else 0):
        since = today - timedelta(days=rng.randint(30, 2000))
        row["subsistence_since"] = since.isoformat()
        row["subsistence_recert_due"] = (today + timedelta(days=rng.randint(0, 364))).isoformat()
    if 16 <= age <= 59 and rng.random() < 0.04:
        row["unemployed_since"] = (today - timedelta(days=rng.randint(0, 400))).isoformat()
        row["unemployment_registered"] = "1" if rng.random() < 0.7 else "0"
    row["lives_alone"] = "1" if alone else "0"
    if age == 0 and (today - born).days <= 120:
        row["household_registered"] = "0" if rng.random() < 0.4 else "1"
        row["medical_insured"] = "0" if rng.random() < 0.4 else "1"
    return row


def generate(sites: Sequence[Site], residents: int, houses: int, seed: int, today: date) -> tuple[str, str]:
    """(residents CSV, houses CSV) for `residents` people in `houses` houses spread over `sites`."""
    rng = random.Random(seed)
    house_rows = []
    for n in range(houses):
        site = sites[n % len(sites)] if houses <= len(sites) else rng.choice(sites)
        house_rows.append({"house_id": f"H{n + 1:06d}", "grid_id": site.grid_id, "building": site.building,
                           "address": f"{site.building}{rng.randint(1, 6)}单元{rng.randint(1, 18)}0{rng.randint(1, 4)}室",
                           "lon": _coordinate(site.lon), "lat": _coordinate(site.lat)})
    # Every house gets one resident first (no empty house in the register), the rest join houses at random.
    homes = list(range(houses)) + [rng.randrange(houses) for _ in range(max(0, residents - houses))]
    size = [0] * houses
    for h in homes:
        size[h] += 1
    resident_rows = []
    for n, h in enumerate(homes):
        house = house_rows[h]
        born = _birth(rng, today)
        row = {"resident_id": f"R{n + 1:07d}", "name": _name(rng), "birth_date": born.isoformat(),
               "sex": rng.choice("MF"), "household_id": f"HH{h + 1:06d}", "house_id": house["house_id"],
               "address": house["address"], "grid_id": house["grid_id"]}
        row.update(_flags(rng, born, today, alone=size[h] == 1 and (today - born).days >= 60 * 365))
        resident_rows.append(row)
    return _csv(RESIDENT_COLUMNS, resident_rows), _csv(HOUSE_COLUMNS, house_rows)


def _coordinate(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _csv(columns: Sequence[str], rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
