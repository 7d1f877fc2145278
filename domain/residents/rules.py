"""Proactive rules as data (rules.v1.yaml) and when each fires for a resident. Pure: no I/O but reading the file.

A firing names its occasion: the rule, the resident and the occasion make the key under which a resident is
contacted once (`Firing.key`), so a daily scan, a life event and a replay all find the same key again.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .records import Resident

RULES_PATH = Path(__file__).with_name("rules.v1.yaml")
TRIGGERS = ("birthday", "recent", "due", "since", "state", "alert")
_DATE_FIELDS = ("birth_date", "subsistence_since", "subsistence_recert_due", "unemployed_since")


@dataclass(frozen=True)
class WeatherAlert:
    alert_id: str
    kind: str  # heat-wave | cold-wave
    starts: date
    ends: date
    grids: frozenset[str] | None = None  # None: the whole city

    def covers(self, grid_id: str, on: date) -> bool:
        return self.starts - timedelta(days=1) <= on <= self.ends and (self.grids is None or grid_id in self.grids)


@dataclass(frozen=True)
class Rule:
    rule_id: str
    trigger: str
    argument: Any  # the birthday's age, the date field's name, the alert kinds, or True
    category: str
    text_zh: str
    text_en: str
    lead_days: int = 0
    window_days: int = 0  # `recent`: within; `since`: after
    when: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Firing:
    rule: Rule
    resident: Resident
    occasion: str
    on: date  # the day the text names (the birthday, the due date, the birth, the alert's start)
    age: int = field(default=0)

    @property
    def key(self) -> str:
        return f"{self.resident.resident_id}|{self.rule.rule_id}|{self.occasion}"

    def text(self) -> str:
        values = {"name": self.resident.display_name, "date": self.on.isoformat(), "age": self.age}
        return f"{self.rule.text_zh.format(**values)} / {self.rule.text_en.format(**values)}"


class RuleError(ValueError):
    """A rules file that cannot be used; the message names the rule and the field."""


def _rule(raw: dict[str, Any]) -> Rule:
    rid = raw.get("id") or "?"
    trigger = raw.get("trigger") or {}
    kinds = [t for t in TRIGGERS if t in trigger]
    if len(kinds) != 1:
        raise RuleError(f"rule {rid}: trigger must name exactly one of {', '.join(TRIGGERS)}")
    kind = kinds[0]
    argument = trigger[kind]
    if kind in ("recent", "due", "since") and argument not in _DATE_FIELDS:
        raise RuleError(f"rule {rid}: trigger.{kind} must be one of {', '.join(_DATE_FIELDS)}")
    if kind == "birthday" and not (isinstance(argument, int) and 0 < argument < 130):
        raise RuleError(f"rule {rid}: trigger.birthday must be an age")
    if kind == "alert":
        argument = tuple(argument if isinstance(argument, list) else [argument])
    for key in ("category", "text_zh", "text_en"):
        if not raw.get(key):
            raise RuleError(f"rule {rid}: {key} is required")
    when = tuple(sorted((raw.get("when") or {}).items()))
    return Rule(rid, kind, argument, raw["category"], raw["text_zh"], raw["text_en"], int(raw.get("lead_days", 0)),
                int(trigger.get("within_days", trigger.get("after_days", 0))), when)


def parse_rules(data: dict[str, Any]) -> tuple[Rule, ...]:
    rules = tuple(_rule(r) for r in data.get("rules") or [])
    ids = [r.rule_id for r in rules]
    if len(set(ids)) != len(ids):
        raise RuleError(f"duplicate rule ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    return rules


@lru_cache(maxsize=4)
def load_rules(path: Path = RULES_PATH) -> tuple[Rule, ...]:
    return parse_rules(yaml.safe_load(path.read_text(encoding="utf-8")))


def anniversary(born: date, year: int) -> date:
    """The birthday in `year`; 29 February falls on 28 February in a common year (the day before the
    birthday would have been: the resident has then lived the full years, as China's civil law counts them)."""
    if born.month == 2 and born.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return born.replace(year=year)


def age_on(born: date, on: date) -> int:
    years = on.year - born.year
    return years if on >= anniversary(born, on.year) else years - 1


def _value(resident: Resident, name: str, today: date) -> Any:
    if name == "age":
        return age_on(resident.birth_date, today)
    if name == "disability":
        return resident.disability_grade is not None
    if name == "subsistence":
        return resident.subsistence_since is not None
    return getattr(resident, name)


def holds(rule: Rule, resident: Resident, today: date) -> bool:
    for name, expected in rule.when:
        value = _value(resident, name, today)
        if isinstance(expected, dict):
            if value is None or value < expected.get("min", value) or value > expected.get("max", value):
                return False
        elif value != expected:
            return False
    return True


def _occasion(rule: Rule, r: Resident, today: date, alerts: Iterable[WeatherAlert]) -> Iterator[tuple[str, date]]:
    """The occasions on which `rule` fires for `r` today (before its conditions are checked)."""
    if rule.trigger == "birthday":
        day = anniversary(r.birth_date, r.birth_date.year + rule.argument)
        if today <= day <= today + timedelta(days=rule.lead_days):
            yield str(rule.argument), day
    elif rule.trigger == "state":
        yield "once", today
    elif rule.trigger == "alert":
        for a in alerts:
            if a.kind in rule.argument and a.covers(r.grid_id, today):
                yield a.alert_id, a.starts
    else:
        day = getattr(r, rule.argument)
        if day is None:
            return
        if ((rule.trigger == "recent" and day <= today <= day + timedelta(days=rule.window_days))
                or (rule.trigger == "due" and today <= day <= today + timedelta(days=rule.lead_days))
                or (rule.trigger == "since" and day + timedelta(days=rule.window_days) <= today)):
            yield day.isoformat(), day


def firings(resident: Resident, rules: Iterable[Rule], today: date, alerts: Iterable[WeatherAlert] = ()) -> list[Firing]:
    """Every rule that fires for `resident` on `today`, with its occasion; the caller drops keys already raised."""
    out = []
    for rule in rules:
        for occasion, on in _occasion(rule, resident, today, alerts):
            if holds(rule, resident, today):
                out.append(Firing(rule, resident, occasion, on, age_on(resident.birth_date, on)))
    return out


def scan(residents: Iterable[Resident], rules: Iterable[Rule], today: date, raised: set[str] | frozenset[str] = frozenset(),
         alerts: Iterable[WeatherAlert] = ()) -> list[Firing]:
    """The daily scan: every new firing over `residents` (keys in `raised` were contacted already)."""
    rules, alerts = tuple(rules), tuple(alerts)
    return [f for r in residents for f in firings(r, rules, today, alerts) if f.key not in raised]
