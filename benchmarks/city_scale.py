"""The city of the real size (issue 14): how fast "where is it?" answers, and what the classifier costs at 1,326 categories.

    .venv/bin/python benchmarks/city_scale.py locate       # point in polygon, gazetteer, most precise place, memory
    .venv/bin/python benchmarks/city_scale.py classifier   # train on the catalogue's seed sentences, predict p50/p99

Prints measured numbers only (no targets, no asserts). Memory is the process's resident set (VmRSS) before and after
building each structure, read from /proc, so it counts GEOS's and numpy's C allocations too; the machine is shared,
so wall times carry the neighbours' load (CPU seconds are printed beside them).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Timer:
    def __enter__(self) -> Timer:
        self.wall, self.cpu, self.rss = time.perf_counter(), time.process_time(), rss_mb()
        return self

    def __exit__(self, *_: Any) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.rss = rss_mb() - self.rss


def row(what: str, value: str, detail: str = "") -> None:
    print(f"  {what:<46} {value:>16}  {detail}")


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return q[49], q[98], ordered[-1]


def each(fn: Callable[[Any], Any], items: list[Any], results: list[Any] | None = None) -> tuple[float, float, list[float]]:
    """Call ``fn`` on every item; (wall seconds, CPU seconds, per-call latencies in ms). Results go to ``results``."""
    latencies = []
    started, started_cpu = time.perf_counter(), time.process_time()
    for item in items:
        t = time.perf_counter()
        result = fn(item)
        latencies.append((time.perf_counter() - t) * 1000)
        if results is not None:
            results.append(result)
    return time.perf_counter() - started, time.process_time() - started_cpu, latencies


# ---------------------------------------------------------------------- locate


def bench_locate(args: argparse.Namespace) -> None:
    from domain.catalogue import load_catalogue
    from domain.city import CITY_CATALOGUE_PATH, Gazetteer, GridLocator, city_map_path, load_city_map, most_precise_place

    print(f"city of the real size: 'where is it?' (process RSS at start {rss_mb():.0f} MB)")
    with Timer() as t:
        city_map_path(args.cache_dir)
    row("map ready in the cache (generated if absent)", f"{t.wall:.2f} s", f"{t.cpu:.2f} s CPU")
    with Timer() as t:
        city_map = load_city_map(args.cache_dir)
    row("map read and checked (GeoJSON, all features)", f"{t.wall:.2f} s", f"+{t.rss:.0f} MB RSS, {len(city_map['features']):,} features")
    with Timer() as t:
        catalogue = load_catalogue(CITY_CATALOGUE_PATH)
    row("catalogue loaded and validated", f"{t.wall:.2f} s", f"+{t.rss:.0f} MB RSS, {len(catalogue.areas):,} areas, {len(catalogue.units):,} units")
    with Timer() as t:
        locator = GridLocator.from_geojson(city_map)
    row("grid locator built (STRtree)", f"{t.wall:.2f} s", f"+{t.rss:.0f} MB RSS, {len(locator):,} grid polygons")
    with Timer() as t:
        gazetteer = Gazetteer.from_geojson(city_map)
    row("gazetteer built", f"{t.wall:.2f} s", f"+{t.rss:.0f} MB RSS, {len(gazetteer):,} names")

    rng = random.Random(args.seed)
    buildings = [f for f in city_map["features"] if f["properties"].get("kind") == "building"]
    inside = [tuple(b["geometry"]["coordinates"]) for b in rng.sample(buildings, args.n)]
    anywhere = [(rng.uniform(119.6, 122.1), rng.uniform(36.5, 38.1)) for _ in range(args.n)]

    for label, points in (("points at buildings", inside), ("points anywhere in the bounding box", anywhere)):
        wall, cpu, lat = each(lambda p: locator.locate(*p), points)
        p50, p99, worst = percentiles(lat)
        row(f"locate one by one, {label}", rate(len(points), wall), f"CPU {rate(len(points), cpu)}; p50 {p50:.3f} ms, p99 {p99:.3f} ms")
        with Timer() as t:
            found = locator.locate_many(points)
        row(f"locate_many, {label}", rate(len(points), t.wall), f"{sum(f is not None for f in found):,} of {len(points):,} in a grid")

    names = {a.id: a.name for a in catalogue.areas}
    addresses = []
    for b in rng.sample(buildings, args.n):
        chain = catalogue.area_chain({"grid": b["properties"]["grid"]})
        district, street = chain[-1], chain[-2]
        addresses.append(f"烟台市{names[district.id]}{names[street.id]}{b['properties']['name']}{rng.randint(1, 6)}单元{rng.randint(1, 30)}01室")
    matches: list[Any] = []
    wall, cpu, lat = each(gazetteer.lookup, addresses, matches)
    p50, p99, _ = percentiles(lat)
    to_grid = sum(1 for m in matches if m is not None and m.level == "grid" and not m.ambiguous)
    row("gazetteer lookup (district+street+building)", rate(len(addresses), wall),
        f"CPU {rate(len(addresses), cpu)}; p50 {p50:.3f} ms, p99 {p99:.3f} ms; {to_grid:,} to one grid")

    reported = [{"lon": p[0], "lat": p[1], "address": a, "district": "zhifu"} for p, a in zip(inside, addresses)]
    wall, cpu, lat = each(lambda r: most_precise_place(catalogue, r, locator, gazetteer), reported)
    p50, p99, _ = percentiles(lat)
    row("most precise place (point + address + district)", rate(len(reported), wall), f"CPU {rate(len(reported), cpu)}; p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    row("process RSS at the end / peak", f"{rss_mb():.0f} MB", f"peak {peak_mb():.0f} MB")


# ---------------------------------------------------------------------- classifier


def bench_classifier(args: argparse.Namespace) -> None:
    from domain.catalogue import load_catalogue
    from domain.city import CITY_CATALOGUE_PATH
    from domain.classifier import ComplaintClassifier, seed_examples

    print(f"classifier at the real catalogue's size (process RSS at start {rss_mb():.0f} MB)")
    catalogue = load_catalogue(CITY_CATALOGUE_PATH)
    examples = seed_examples(catalogue)
    texts, labels = [e.text for e in examples], [e.category for e in examples]
    row("training set: the catalogue's seed sentences", f"{len(texts):,}", f"{len(set(labels)):,} categories")
    before = rss_mb()
    # The catalogue-trained default's settings (domain.classifier.default_classifier): a plain SVM, calibrated;
    # --recipe flat forces one flat model over every label, as before the domain -> item split.
    options: dict[str, Any] = {"nb_weighting": False, "hierarchical": {"default": None, "flat": False}[args.recipe]}
    if args.max_iter is not None:
        options["max_iter"] = args.max_iter
    with Timer() as t:
        classifier = ComplaintClassifier(**options).fit(texts, labels)
    row("fit incl. calibration (wall)", f"{t.wall:.1f} s",
        f"{t.cpu:.1f} s CPU; hierarchical {classifier.metadata.get('hierarchical')}, max_iter {classifier.max_iter}")
    row("memory: RSS after fit - before / peak", f"+{rss_mb() - before:.0f} MB", f"peak {peak_mb():.0f} MB")
    with tempfile.TemporaryDirectory() as folder:
        path = classifier.save(Path(folder) / "model.joblib")
        row("saved model size (joblib, compress=3)", f"{path.stat().st_size / 1e6:.1f} MB")

    # Texts the model has not seen: the same recipe with another seed (other templates, places and pleas).
    unseen = seed_examples(catalogue, per_keyword=1, seed=args.seed)
    sample = random.Random(args.seed).sample(unseen, min(args.predictions, len(unseen)))
    classifier.predict(sample[0].text)  # the first call pays for lazy initialisation
    wall, cpu, lat = each(lambda e: classifier.predict(e.text), sample)
    p50, p99, worst = percentiles(lat)
    row("predict one text: p50 / p99 / max", f"{p50:.1f} / {p99:.1f} ms", f"max {worst:.1f} ms; {rate(len(sample), wall)}")
    batch = [e.text for e in unseen[: args.batch]]
    with Timer() as t:
        predictions = classifier.predict_many(batch)
    row(f"predict_many ({len(batch):,} texts)", rate(len(batch), t.wall), f"{t.cpu:.1f} s CPU")
    correct = sum(p.category == e.category for p, e in zip(predictions, unseen[: args.batch]))
    row("top-1 on those re-worded seed sentences", f"{correct / len(batch):.1%}", "(a smoke figure, not an accuracy claim)")
    sure = sum(p.confidence >= 0.65 for p in predictions)
    row("of them at confidence >= 0.65 (triage's threshold)", f"{sure / len(batch):.1%}")
    row("process peak RSS", f"{peak_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    locate = sub.add_parser("locate", help="point in polygon, gazetteer, most precise place")
    locate.add_argument("--n", type=int, default=20_000, help="lookups per measurement")
    locate.add_argument("--seed", type=int, default=14)
    locate.add_argument("--cache-dir", type=Path, default=None, help="map cache (default $CITYOPS_CITY_CACHE or .cache/city)")
    classifier = sub.add_parser("classifier", help="fit and predict at 1,326 categories")
    classifier.add_argument("--predictions", type=int, default=500, help="single predictions timed")
    classifier.add_argument("--batch", type=int, default=5_000, help="texts in the predict_many batch")
    classifier.add_argument("--seed", type=int, default=7)
    classifier.add_argument("--max-iter", type=int, default=None, help="the classifier's max_iter (default: its own)")
    classifier.add_argument("--recipe", choices=("default", "flat"), default="default",
                            help="default: as default_classifier trains it (domain -> item at this size); flat: one model")
    args = parser.parse_args()
    {"locate": bench_locate, "classifier": bench_classifier}[args.what](args)


if __name__ == "__main__":
    main()
