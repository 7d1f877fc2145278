"""Residents' base data and the proactive rules run on it ("the policy finds the person", issue 14 point 5).

* `records`: the CSV format a city fills from its own population register, and the validation of each row;
* `rules`: the proactive rules (loaded from `rules.v1.yaml`: data, not code) and when each fires for a resident;
* `generate`: a seeded generator of base data for the demo city and the city of the real size.
"""
