"""`cityops triage`: train and try the complaint classifier, inspect and check the responsibility catalogue.

Heavy imports (scikit-learn, the catalogue) happen inside the commands so that `cityops --help` stays fast.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from domain.catalogue import Catalogue
    from domain.classifier import ComplaintClassifier, EvaluationReport

app = typer.Typer(
    help="Train and try the complaint classifier; inspect the responsibility catalogue.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

_MAX_LABELS_LISTED = 25


# ---------------------------------------------------------------------- train


@app.command()
def train(
    csv_file: Path | None = typer.Option(
        None, "--csv", exists=True, dir_okay=False, help="CSV file with a text column and a label column."
    ),
    nyc: Path | None = typer.Option(
        None, "--nyc", exists=True, dir_okay=False, help="NYC 311 CSV export (complaint_type, descriptor, ...)."
    ),
    text_col: str = typer.Option("text", "--text-col", help="CSV column holding the complaint text."),
    label_col: str = typer.Option("category", "--label-col", help="CSV column holding the label."),
    raw_labels: bool = typer.Option(
        False, "--raw-labels", help="NYC: label rows with the raw complaint type instead of our category."
    ),
    without_type: bool = typer.Option(
        False, "--without-type", help="NYC: leave the complaint type out of the text (a harder, fairer test)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Where to save the model trained on all rows."),
    holdout: float = typer.Option(
        0.2, "--holdout", min=0.0, max=0.9, help="Share held back to measure accuracy; 0 skips the measurement."
    ),
    unseen: bool = typer.Option(
        False,
        "--unseen",
        help="Hold back whole groups so no test text (seed keyword, or exact CSV/NYC text) was seen in training.",
    ),
    group_col: str | None = typer.Option(None, "--group-col", help="CSV column grouping rows for --unseen."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N rows of the file."),
    seed: int = typer.Option(2026, "--seed", help="Random seed of the held-back split."),
    catalogue_path: Path | None = typer.Option(None, "--catalogue", help="Catalogue YAML (default: packaged v1)."),
    from_log: str | None = typer.Option(
        None, "--from-log", metavar="BOOTSTRAP",
        help="Add the categories people confirmed in the event log on this broker (operators' categories at submission, "
             "manual triage) to the training data: the catalogue's seed sentences, or --csv / --nyc.",
    ),
) -> None:
    """Train a complaint classifier and print its accuracy on a held-back part.

    Data: --csv FILE (columns --text-col/--label-col), --nyc PATH (an NYC 311 export), or neither to train on the
    catalogue's generated seed sentences; --from-log BOOTSTRAP adds the categories people confirmed in
    cityops.triage.v1 to either. Prints the accuracy, the label count, the training time and the labels the
    catalogue does not map (those still train; they just cannot be routed). Publish the saved model to running
    triage services with `cityops triage publish`.
    """
    from domain.catalogue import load_catalogue
    from domain.classifier import ComplaintClassifier, evaluate

    if csv_file is not None and nyc is not None:
        raise typer.BadParameter("give one of --csv or --nyc")
    catalogue = load_catalogue(catalogue_path)
    groups: list[str] | None
    texts, labels, groups, source = _training_data(
        catalogue, csv_file, nyc, text_col, label_col, group_col, raw_labels, without_type, limit
    )
    if from_log is not None:
        texts, labels, groups, source = _with_log(texts, labels, groups, source, from_log)
    if len(set(labels)) < 2:
        raise typer.BadParameter(f"{source}: {len(texts)} examples with {len(set(labels))} label(s); a classifier needs at least 2")
    console.print(f"[bold]{source}[/]: {len(texts):,} examples, {len(set(labels)):,} labels")
    if holdout > 0:
        with _spinner("measuring accuracy on the held-back part"):
            report = evaluate(texts, labels, holdout_fraction=holdout, seed=seed, groups=groups if unseen else None)
        _print_report(report)
    with _spinner("training on all examples"):
        classifier = ComplaintClassifier().fit(texts, labels)
        classifier.metadata["trained_on"] = source
    console.print(
        f"trained on all {len(texts):,} examples in {classifier.metadata['train_seconds']:.2f} s "
        f"({classifier.metadata['train_cpu_seconds']:.2f} s CPU)"
    )
    _print_unmapped(classifier, catalogue)
    if out is not None:
        classifier.save(out)
        console.print(f"model saved to {out}")


def _with_log(
    texts: list[str], labels: list[str], groups: list[str] | None, source: str, bootstrap: str
) -> tuple[list[str], list[str], list[str], str]:
    """The training data plus what people confirmed on the log: the log alone is too small and too skewed to
    the categories that are hard to guess to train on, the seeds alone never learn from operators."""
    import asyncio

    from services.triage.logdata import confirmed_examples

    with _spinner(f"reading confirmed categories from {bootstrap}"):
        log_texts, log_labels = asyncio.run(confirmed_examples(bootstrap))
    console.print(f"event log on {bootstrap}: {len(log_texts):,} confirmed categories")
    base_groups = groups if groups is not None else list(texts)
    return ([*texts, *log_texts], [*labels, *log_labels], [*base_groups, *log_texts],
            f"{source} + event log on {bootstrap} ({len(log_texts):,} confirmed)")


def _training_data(
    catalogue: Catalogue,
    csv_file: Path | None,
    nyc: Path | None,
    text_col: str,
    label_col: str,
    group_col: str | None,
    raw_labels: bool,
    without_type: bool,
    limit: int | None,
) -> tuple[list[str], list[str], list[str] | None, str]:
    """(texts, labels, groups for --unseen, a description of the source)."""
    if nyc is not None:
        return _nyc_data(nyc, raw_labels, without_type, limit)
    if csv_file is not None:
        return _csv_data(csv_file, text_col, label_col, group_col, limit)
    from domain.classifier import seed_examples

    examples = seed_examples(catalogue)
    groups = [f"{e.category}|{e.language}|{e.keyword}" for e in examples]
    return [e.text for e in examples], [e.category for e in examples], groups, f"catalogue {catalogue.version} seeds"


def _nyc_data(
    path: Path, raw_labels: bool, without_type: bool, limit: int | None
) -> tuple[list[str], list[str], list[str], str]:
    from services.triage.nyc311 import nyc_training_set

    with _file_progress(path) as advance:
        rows = _first(_rows(path, advance), limit)
        data = nyc_training_set(rows, raw_labels=raw_labels, include_type=not without_type)
    if data.skipped_unmapped or data.skipped_empty:
        console.print(
            f"skipped {data.skipped_unmapped:,} rows whose complaint type maps to no category and "
            f"{data.skipped_empty:,} empty rows"
        )
    kind = "raw complaint types" if raw_labels else "mapped categories"
    return data.texts, data.labels, list(data.texts), f"NYC 311 {path.name} ({kind})"


def _csv_data(
    path: Path, text_col: str, label_col: str, group_col: str | None, limit: int | None
) -> tuple[list[str], list[str], list[str], str]:
    texts: list[str] = []
    labels: list[str] = []
    groups: list[str] = []
    with _file_progress(path) as advance:
        for row in _first(_rows(path, advance), limit):
            _require_columns(row, path, text_col, label_col, group_col)
            text, label = (row.get(text_col) or "").strip(), (row.get(label_col) or "").strip()
            if text and label:
                texts.append(text)
                labels.append(label)
                groups.append((row.get(group_col) or "") if group_col else text)
    if not texts:
        raise typer.BadParameter(f"{path} has no rows with both {text_col!r} and {label_col!r}")
    return texts, labels, groups, f"CSV {path.name}"


def _require_columns(row: dict[str, str], path: Path, *columns: str | None) -> None:
    missing = [c for c in columns if c and c not in row]
    if missing:
        raise typer.BadParameter(f"{path} has no column(s) {', '.join(missing)}; it has {', '.join(row)}")


def _rows(path: Path, advance: Callable[[int], None]) -> Iterator[dict[str, str]]:
    from services.triage.nyc311 import iter_csv_rows

    return iter_csv_rows(path, on_bytes=advance)


def _first(rows: Iterator[dict[str, str]], limit: int | None) -> Iterator[dict[str, str]]:
    for count, row in enumerate(rows):
        if limit is not None and count >= limit:
            return
        yield row


@contextmanager
def _file_progress(path: Path) -> Iterator[Callable[[int], None]]:
    """A progress bar over the bytes of a file being read (large CSVs take a while)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("reading {task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(path.name, total=path.stat().st_size)
        yield lambda n: progress.advance(task, n)


@contextmanager
def _spinner(message: str) -> Iterator[None]:
    with err_console.status(message):
        yield


def _print_report(report: EvaluationReport) -> None:
    console.print(
        f"held-back accuracy: [bold]{report.accuracy:.2%}[/] on {report.n_test:,} examples "
        f"({report.split} split; trained on {report.n_train:,} in {report.train_seconds:.2f} s, "
        f"{report.train_cpu_seconds:.2f} s CPU)"
    )
    if report.top_confusions:
        mistakes = ", ".join(f"{c.true} -> {c.predicted} ({c.count})" for c in report.top_confusions[:5])
        console.print(f"most frequent mistakes: {mistakes}")


def _print_unmapped(classifier: ComplaintClassifier, catalogue: Catalogue) -> None:
    unmapped = classifier.unmapped_labels(catalogue)
    console.print(f"labels: {len(classifier.labels):,}; not in catalogue {catalogue.version}: {len(unmapped):,}")
    if unmapped:
        shown = ", ".join(unmapped[:_MAX_LABELS_LISTED])
        more = f" ... and {len(unmapped) - _MAX_LABELS_LISTED} more" if len(unmapped) > _MAX_LABELS_LISTED else ""
        console.print(f"unmapped labels (they train and predict, but cannot be routed): {shown}{more}")


# ---------------------------------------------------------------------- publish


@app.command()
def publish(
    model: Path = typer.Argument(..., exists=True, dir_okay=False, help="A model saved by `cityops triage train --out`."),
    to: Path | None = typer.Option(
        None, "--to", help="The model file triage watches (default: CITYOPS_TRIAGE_MODEL_PATH, else STATE_DIR/triage.model)."
    ),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="The hub's state dir (`cityops up`: .state/hub); the model goes to STATE_DIR/triage.model."
    ),
) -> None:
    """Publish a trained model to the running triage services, without a restart.

    Checks that the model loads, then replaces the watched file atomically (this command is its only writer).
    Each triage instance looks at the file at most every CITYOPS_TRIAGE_MODEL_CHECK_S seconds (default 2), before
    a batch, and classifies the next tickets with the new model; their TicketClassified events carry its version
    (model_version, printed here), so the log shows which model decided each ticket.
    """
    from domain.classifier import ComplaintClassifier
    from services.triage.modelfile import publish_model
    from services.triage.settings import TriageSettings

    if to is not None and state_dir is not None:
        raise typer.BadParameter("give --to or --state-dir, not both")
    target = to or (TriageSettings(state_dir=state_dir) if state_dir is not None else TriageSettings()).published_model_path
    try:
        version = publish_model(model, target, ComplaintClassifier.load)
    except Exception as exc:  # not a model this code reads: nothing was published
        err_console.print(f"[red]not published[/]: {model} does not load as a classifier ({type(exc).__name__}: {exc})")
        raise typer.Exit(code=1) from None
    console.print(f"published {model} to {target}: model_version {version}")


# ---------------------------------------------------------------------- evaluate


@app.command()
def evaluate(
    csv_file: Path | None = typer.Option(
        None, "--csv", exists=True, dir_okay=False, help="Labelled CSV (columns --text-col/--label-col)."
    ),
    nyc: Path | None = typer.Option(
        None, "--nyc", exists=True, dir_okay=False, help="NYC 311 CSV export, labelled with our mapped categories."
    ),
    text_col: str = typer.Option("text", "--text-col", help="CSV column holding the complaint text."),
    label_col: str = typer.Option("category", "--label-col", help="CSV column holding the label."),
    without_type: bool = typer.Option(
        False, "--without-type", help="NYC: leave the complaint type out of the text (a harder, fairer test)."
    ),
    model: Path | None = typer.Option(
        None, "--model", exists=True, dir_okay=False,
        help="A model saved by `train --out` (default: the catalogue-trained seed model). Ignored with --holdout.",
    ),
    label_map: Path | None = typer.Option(
        None, "--label-map", exists=True, dir_okay=False,
        help="YAML mapping the model's catalogue codes (or domains) to the file's labels.",
    ),
    holdout: float = typer.Option(
        0.0, "--holdout", min=0.0, max=0.9,
        help="Instead of a saved model: train ours and the baseline on the rest, score both on this share.",
    ),
    seed: int = typer.Option(2026, "--seed", help="Random seed of the stratified split (--holdout)."),
    repeat: int = typer.Option(
        1, "--repeat", min=1, max=50,
        help="--holdout: also score N-1 more splits (seeds SEED+1...) and print the mean top-1 of both.",
    ),
    target_accuracy: float = typer.Option(
        0.9, "--target-accuracy", min=0.01, max=1.0,
        help="Accuracy the automatically classified tickets must reach; sets the manual-triage threshold.",
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N rows of the file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    catalogue_path: Path | None = typer.Option(None, "--catalogue", help="Catalogue YAML (default: packaged v1)."),
) -> None:
    """Measure a classifier on labelled real text: top-1 and top-3 accuracy, macro-F1, the expected
    calibration error, the most frequent confusions, the p50/p99 time of one classification, and the
    manual-triage threshold (the lowest confidence at which the tickets kept automatic reach
    --target-accuracy, with the share sent to people).

    With --holdout F: trains our classifier and the baseline (character 1-2-gram TF-IDF + LinearSVC) on the
    same stratified 1-F of the rows and prints both on the held-back F.
    """
    from domain.catalogue import load_catalogue
    from services.triage.evaluation import load_label_map, run_model, run_split

    if (csv_file is None) == (nyc is None):
        raise typer.BadParameter("give one of --csv or --nyc")
    catalogue = load_catalogue(catalogue_path)
    texts, labels, _, source = _training_data(
        catalogue, csv_file, nyc, text_col, label_col, None, False, without_type, limit
    )
    if holdout > 0:
        with _spinner(f"training ours and the baseline on {1 - holdout:.0%} of {source}"):
            split = run_split(texts, labels, holdout, seed, target_accuracy=target_accuracy)
        result: dict[str, Any] = {"source": source, **split.model_dump(mode="json")}
        if repeat > 1:
            result["repeats"] = _repeats(texts, labels, holdout, seed, repeat, split, target_accuracy)
    else:
        classifier = _model_or_default(model, catalogue)
        mapping = load_label_map(label_map) if label_map is not None else None
        with _spinner(f"classifying {len(texts):,} texts"):
            run = run_model(classifier, texts, labels, name=str(model or "default seed model"),
                            label_map=mapping, target_accuracy=target_accuracy)
        result = {"source": source, "model": run.model_dump(mode="json")}
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        _print_evaluation(result)


def _repeats(
    texts: list[str], labels: list[str], holdout: float, seed: int, repeat: int, first: Any, target_accuracy: float
) -> dict[str, Any]:
    """Top-1 of ours and the baseline on ``repeat`` splits (the first already run): one split of a few
    hundred rows moves by a point per text, the mean says more."""
    from services.triage.evaluation import run_split

    splits = [first]
    with _spinner(f"scoring {repeat - 1} more splits"):
        splits += [run_split(texts, labels, holdout, seed + i, target_accuracy=target_accuracy) for i in range(1, repeat)]
    per_seed = [{"seed": sp.seed, "ours": sp.ours.scores.top1, "baseline": sp.baseline.scores.top1} for sp in splits]
    return {
        "per_seed": per_seed,
        "mean_ours": round(sum(r["ours"] for r in per_seed) / repeat, 4),
        "mean_baseline": round(sum(r["baseline"] for r in per_seed) / repeat, 4),
    }


def _model_or_default(model: Path | None, catalogue: Catalogue) -> ComplaintClassifier:
    from domain.classifier import ComplaintClassifier, default_classifier

    if model is not None:
        return ComplaintClassifier.load(model)
    with _spinner("training the seed classifier from the catalogue"):
        return default_classifier(catalogue)


def _print_evaluation(result: dict[str, Any]) -> None:
    console.print(f"[bold]{result['source']}[/]")
    if "ours" in result:
        console.print(
            f"stratified split (seed {result['seed']}): trained on {result['n_train']:,}, "
            f"scored on {result['n_test']:,} held back"
        )
        runs = [result["ours"], result["baseline"]]
    else:
        runs = [result["model"]]
    for run in runs:
        _print_run(run)
    if "repeats" in result:
        r = result["repeats"]
        seeds = [x["seed"] for x in r["per_seed"]]
        console.print(
            f"mean top-1 over {len(seeds)} splits (seeds {seeds[0]}-{seeds[-1]}): "
            f"ours [bold]{r['mean_ours']:.3f}[/], baseline {r['mean_baseline']:.3f}"
        )


def _print_run(run: dict[str, Any]) -> None:
    s = run["scores"]
    ece = f", ECE {s['ece']:.3f}" if s["ece"] is not None else ""
    trained = f" (trained in {run['train_seconds']:.2f} s)" if run.get("train_seconds") else ""
    console.print(
        f"[bold]{run['name']}[/]{trained}: top-1 [bold]{s['top1']:.3f}[/], top-3 {s['top3']:.3f}, "
        f"macro-F1 {s['macro_f1']:.3f}{ece} on {s['n']:,} texts"
    )
    if s["confusions"]:
        pairs = ", ".join(f"{c['true']} -> {c['predicted']} ({c['count']})" for c in s["confusions"][:6])
        console.print(f"  most frequent confusions: {pairs}")
    if run.get("latency"):
        lat = run["latency"]
        console.print(
            f"  classify one text in-process: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms wall; "
            f"CPU p50 {lat['cpu_p50_ms']:.1f} ms, p99 {lat['cpu_p99_ms']:.1f} ms ({lat['n']} texts)"
        )
    if run.get("threshold"):
        t = run["threshold"]
        c = t["chosen"]
        if t["reached"]:
            console.print(
                f"  manual-triage threshold for {t['target_accuracy']:.0%} accuracy: [bold]{c['threshold']:.2f}[/] "
                f"-> {c['to_people']:.1%} to people, the rest {c['accuracy_of_rest']:.1%} right"
            )
        else:
            console.print(f"  no threshold reaches {t['target_accuracy']:.0%} accuracy: every ticket would go to people")


# ---------------------------------------------------------------------- classify


@app.command()
def classify(
    text: str = typer.Argument(..., help="The complaint text, Chinese or English."),
    model: Path | None = typer.Option(
        None, "--model", exists=True, dir_okay=False, help="A model saved by `train --out` (default: seed model)."
    ),
    district: str | None = typer.Option(None, "--district", help="District area id of the location."),
    street: str | None = typer.Option(None, "--street", help="Street area id of the location."),
    community: str | None = typer.Option(None, "--community", help="Community area id of the location."),
    grid: str | None = typer.Option(None, "--grid", help="Grid area id of the location."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    catalogue_path: Path | None = typer.Option(None, "--catalogue", help="Catalogue YAML (default: packaged v1)."),
) -> None:
    """Classify one complaint and show where the catalogue routes it.

    Prints the category, its name, the confidence and the runners-up, then the routing (lead unit, co-units,
    level, whether the parties must consult) and the time limits. Without --model, a classifier is trained
    from the catalogue's seed sentences first (a few seconds).
    """
    from domain.catalogue import Location, load_catalogue
    from domain.classifier import ComplaintClassifier, default_classifier

    catalogue = load_catalogue(catalogue_path)
    if model is not None:
        classifier = ComplaintClassifier.load(model)
    else:
        with _spinner("training the seed classifier from the catalogue"):
            classifier = default_classifier(catalogue)
    prediction = classifier.predict(text)
    location = Location(district=district, street=street, community=community, grid=grid)
    result = _classification(catalogue, prediction, location)
    if as_json:
        console.print_json(json.dumps(result, ensure_ascii=False))
    else:
        _print_classification(result)


def _classification(catalogue: Catalogue, prediction: Any, location: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "category": prediction.category,
        "confidence": prediction.confidence,
        "alternatives": [list(a) for a in prediction.alternatives],
        "in_catalogue": catalogue.has_category(prediction.category),
    }
    if not result["in_catalogue"]:
        return result
    category = catalogue.category(prediction.category)
    decision = catalogue.route(category.code, location)
    lead = catalogue.unit(decision.lead)
    result.update(
        name=category.name,
        name_en=category.name_en,
        routing=decision.model_dump(mode="json") | {"lead_name": lead.name, "lead_name_en": lead.name_en},
        limits={k: str(v) for k, v in category.limits},
    )
    return result


def _print_classification(result: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("category", f"[bold]{result['category']}[/]")
    if result["in_catalogue"]:
        table.add_row("name", f"{result['name']} / {result['name_en']}")
    table.add_row("confidence", f"{result['confidence']:.2f}")
    table.add_row("alternatives", ", ".join(f"{label} {p:.2f}" for label, p in result["alternatives"]))
    if not result["in_catalogue"]:
        table.add_row("routing", "[yellow]not a catalogue category: an operator must classify this ticket[/]")
        console.print(table)
        return
    routing = result["routing"]
    table.add_row("lead", f"{routing['lead']} ({routing['lead_name']}) - {routing['basis']}, level {routing['level']}")
    table.add_row("co-units", ", ".join(routing["co_units"]) or "-")
    table.add_row("consultation", "needed" if routing["needs_consultation"] else "not needed")
    table.add_row("limits", ", ".join(f"{k} {v}" for k, v in result["limits"].items()))
    console.print(table)


# ---------------------------------------------------------------------- catalogue


@app.command()
def catalogue(
    check: bool = typer.Option(False, "--check", help="Validate the catalogue and the NYC mapping; exit 1 on errors."),
    units: bool = typer.Option(False, "--units", help="List the units (and their task topics) instead."),
    diff: Path | None = typer.Option(
        None, "--diff", exists=True, dir_okay=False, help="List categories whose routing differs in this catalogue."
    ),
    path: Path | None = typer.Option(None, "--path", help="Catalogue YAML (default: packaged v1)."),
) -> None:
    """List the responsibility catalogue's categories (or units), check it, or diff it against another.

    --check validates every reference (units, areas, limits, levels) and that the NYC 311 mapping only names
    existing categories. --diff OTHER lists categories a what-if run with OTHER would route differently.
    """
    from pydantic import ValidationError

    from domain.catalogue import load_catalogue

    try:
        loaded = load_catalogue(path)
    except (ValidationError, ValueError, OSError) as exc:
        err_console.print(f"[red]catalogue invalid[/]: {exc}")
        raise typer.Exit(code=1) from None
    if check:
        _check(loaded)
    elif diff is not None:
        _print_diff(loaded, load_catalogue(diff))
    elif units:
        _print_units(loaded)
    else:
        _print_categories(loaded)


def _check(loaded: Catalogue) -> None:
    from services.triage.nyc311 import load_nyc_mapping

    unknown = sorted({code for code in load_nyc_mapping().values() if code and not loaded.has_category(code)})
    if unknown:
        err_console.print(f"[red]NYC mapping names categories the catalogue lacks[/]: {', '.join(unknown)}")
        raise typer.Exit(code=1)
    departments = sum(1 for u in loaded.units if u.area is None and u.branch_of is None)
    branches = sum(1 for u in loaded.units if u.branch_of is not None)
    by_level: Counter[str] = Counter(a.level for a in loaded.areas)
    areas = ", ".join(f"{by_level[level]:,} {plural}" for level, plural in _AREA_PLURALS if by_level[level])
    branch_text = f", {branches:,} district branches" if branches else ""
    console.print(
        f"catalogue {loaded.version} OK: {len(loaded.categories):,} categories, {len(loaded.units):,} units "
        f"({departments} city-level departments and hotline{branch_text}, {len(loaded.areas):,} area units), "
        f"{len(loaded.own_topic_units()) + 1:,} task topics ({len(loaded.own_topic_units()):,} own, 1 shared by "
        f"{len(loaded.area_units()):,} area units); NYC mapping OK"
    )
    console.print(f"areas: {areas}")


_AREA_PLURALS = (("district", "districts"), ("street", "streets"), ("community", "communities"), ("grid", "grids"))


def _print_categories(loaded: Catalogue) -> None:
    table = Table(title=f"responsibility catalogue {loaded.version}: {len(loaded.categories)} categories")
    for column in ("code", "name", "lead", "co-units", "consult", "sign / response / resolution"):
        table.add_column(column, overflow="fold")
    for cat in loaded.categories:
        lead = cat.lead or (
            f"[cyan]{cat.lead_branch_of} branch of location[/]" if cat.lead_branch_of else f"[cyan]{cat.lead_by_area} of location[/]"
        )
        limits = f"{cat.limits.sign_for} / {cat.limits.response} / {cat.limits.resolution}"
        table.add_row(
            cat.code, f"{cat.name}\n{cat.name_en}", lead, ", ".join([*(f"{b} branch" for b in cat.co_branches_of), *cat.co_units]),
            _yes(cat.needs_consultation), limits
        )
    console.print(table)


def _print_units(loaded: Catalogue) -> None:
    table = Table(title=f"units of catalogue {loaded.version}")
    for column in ("id", "name", "level", "kind", "task topic"):
        table.add_column(column, overflow="fold")
    for unit in loaded.units:
        table.add_row(unit.id, f"{unit.name}\n{unit.name_en}", unit.level, unit.kind, loaded.task_topic_of(unit.id))
    console.print(table)


def _print_diff(mine: Catalogue, other: Catalogue) -> None:
    changed = mine.diff(other)
    console.print(f"{len(changed)} categories route differently ({mine.version} vs {other.version})")
    for code in changed:
        console.print(f"  {code}")


def _yes(flag: bool) -> str:
    return "yes" if flag else ""
