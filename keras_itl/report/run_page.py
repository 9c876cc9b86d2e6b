"""The page of one ``keras-itl train`` run: settings, test metrics, training curves, confusion matrix and,
for the instance method, its selection, the gallery of ranked training instances and influence against loss."""
from __future__ import annotations

from pathlib import Path

from keras_itl.report.gallery import Gallery
from keras_itl.report.html import (
    MISSING,
    bullet_list,
    esc,
    figure,
    key_values,
    link,
    number,
    page,
    section,
    table,
)
from keras_itl.report.images import file_data_url
from keras_itl.run_record import RUN_FILE, RunRecord

DETECTION_KEYS = ("precision", "recall", "roc_auc")


def run_page(run_dir: Path, record: RunRecord, gallery: Gallery | None, storage_key: str) -> str:
    """The HTML of the run's page (``gallery`` for instance runs)."""
    config = record.config
    source = config.get("source") or "random init"
    title = f"{config['method']}: {config['arch']} from {source} on {config['target']}"
    test = record.test or {}
    subtitle = (f"test error rate {number(test.get('error_rate'), '.2%')} on {test.get('num_examples', MISSING)} "
                f"test images; {record.dropped} training instances dropped; {number(record.seconds, '.0f')} s")
    sections = [section("metrics", "Test metrics", _metrics(record))]
    if record.influence is not None:
        sections.append(section("selection", "Selection", _selection(run_dir, record)))
    if record.dataset.get("decisions"):
        sections.append(section("decisions", "Decisions applied", _decisions(record.dataset["decisions"])))
    if gallery is not None:
        sections.append(section("gallery-section", "Training instances", _gallery(gallery)))
        if gallery.scatter is not None:
            sections.append(section("scatter", "Influence against loss",
                                    figure(gallery.scatter, "one point per training instance")))
    curves = figure(file_data_url(run_dir / "training_curves.png"), "loss and validation accuracy per epoch, in order")
    sections += [section("curves", "Training curves", curves),
                 section("settings", "Settings", _settings(record)),
                 section("files", "Files", _files(run_dir, record))]
    return page(title, subtitle, sections, gallery.page_data(storage_key) if gallery is not None else None)


def _settings(record: RunRecord) -> str:
    """The run's options (instance options prefixed), then the data it saw."""
    options = [(key, value) for key, value in record.config.items() if key != "instance"]
    if record.config["method"] == "instance":
        options += [(f"instance.{key}", value) for key, value in record.config["instance"].items()]
    dataset = record.dataset
    data_rows = [("dataset", dataset.get("name")), ("classes", len(dataset.get("class_names", []))),
                 ("image shape", "x".join(map(str, dataset.get("image_shape", [])))),
                 *((f"{split} examples", size) for split, size in dataset.get("sizes", {}).items()),
                 ("flipped labels", len(dataset.get("flipped_ids", [])))]
    if record.fine_tuning:
        data_rows.append(("fine-tuning rate factor kept", record.fine_tuning.get("factor")))
    return f"<h3>options</h3>{key_values(options, 'settings-options')}<h3>data</h3>{key_values(data_rows)}"


def _metrics(record: RunRecord) -> str:
    """Loss, accuracy and error rate, per-class accuracy and the confusion matrix."""
    test = record.test or {}
    summary = table(["loss", "accuracy", "error rate", "test images"],
                    [[number(test.get("loss")), number(test.get("accuracy"), ".2%"),
                      number(test.get("error_rate"), ".2%"), test.get("num_examples", MISSING)]], numeric_from=0)
    per_class = test.get("per_class_accuracy", {})
    classes = table(["class", "accuracy"], [[name, number(value, ".2%")] for name, value in per_class.items()],
                    numeric_from=1)
    return (f'{summary}<div class="columns"><div>{classes}</div>'
            f'<div><p class="muted">confusion matrix: true class (rows) against predicted (columns)</p>'
            f'{_confusion(test.get("confusion", []), record.class_names)}</div></div>')


def _confusion(matrix: list[list[int]], class_names: list[str]) -> str:
    """The confusion matrix, each count shaded by its share of its row."""
    head = "".join(f"<th>{esc(name)}</th>" for name in class_names)
    rows = []
    for name, counts in zip(class_names, matrix):
        total = max(1, sum(counts))
        cells = "".join(f'<td style="background:rgba(46,92,138,{count / total:.2f});'
                        f'color:{"#fff" if count / total > 0.5 else "inherit"}">{int(count)}</td>' for count in counts)
        rows.append(f"<tr><th>{esc(name)}</th>{cells}</tr>")
    return (f'<table class="confusion" id="confusion"><thead><tr><th>true \\ predicted</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _selection(run_dir: Path, record: RunRecord) -> str:
    """What the instance method dropped, by which policy, what held it back, and how it found flipped labels."""
    report = record.influence
    selection = report["selection"]
    sizes = record.dataset.get("sizes", {})
    per_class = ", ".join(f"{name}: {count}" for name, count in selection["dropped_per_class"].items() if count)
    lines = [f"policy {selection['policy']} chose {selection['chosen']}: dropped {len(selection['drop_ids'])} of "
             f"{sizes.get('train', MISSING)} training instances{f' ({per_class})' if per_class else ''}"]
    validation = report.get("validation", {})
    if "report_loss" in validation:
        lines.append(f"validation loss on the report part, after the refit: {number(validation['report_loss'])}")
    body = f"<p>{'<br>'.join(esc(line) for line in lines)}</p>{bullet_list(selection['notes'])}"
    detection = report.get("label_noise_detection")
    if detection:
        body += ("<p>against the deliberately flipped training labels:</p>"
                 + table(["flipped", "dropped and flipped", *DETECTION_KEYS],
                         [[detection["flipped"], detection["dropped_and_flipped"],
                           *(number(detection.get(key), ".3f") for key in DETECTION_KEYS)]], numeric_from=0))
    return body + figure(file_data_url(run_dir / "influence_histogram.png"), "influence of the training instances")


def _decisions(decisions: dict) -> str:
    """The decisions file the run was trained with, and what it decided."""
    groups = [("dropped before training", decisions["drop"]), ("pinned: no policy may drop them", decisions["keep"]),
              ("relabelled (and pinned)", [f"{i} -> {label}" for i, label in decisions["relabel"].items()])]
    details = "".join(f"<details><summary>{esc(name)}: {len(ids)}</summary>{bullet_list(ids)}</details>"
                      for name, ids in groups)
    return f"<p>from {esc(decisions['file'])}</p>{details}"


def _gallery(gallery: Gallery) -> str:
    """The controls, the cards' grid and the export area; the page's script fills them."""
    count = len(gallery.rows["id"])
    return (f'<p class="muted">{count} training instances, as the run ranked them. Mark the ones you want kept, '
            "dropped or relabelled, export decisions.csv and train again with <code>--decisions decisions.csv"
            "</code> (decisions the run was trained with are exported too).</p>"
            '<div class="toolbar"><label>class <select id="filter-class"></select></label>'
            '<label>show <select id="filter-decision"></select></label>'
            '<label>sort <select id="sort"></select></label></div>'
            '<div class="pager"><button id="page-prev" type="button">previous</button><span id="page-info"></span>'
            '<button id="page-next" type="button">next</button></div>'
            '<div id="gallery" class="gallery"></div>'
            '<div class="toolbar"><span id="decided-count"></span>'
            '<button id="export-decisions" type="button">Export decisions.csv</button>'
            '<button id="clear-decisions" type="button">Clear my decisions</button></div>'
            '<textarea id="decisions-csv" readonly placeholder="the exported decisions.csv appears here too">'
            "</textarea>")


def _files(run_dir: Path, record: RunRecord) -> str:
    """Links to the run's own files, beside this page (not to an export elsewhere)."""
    names = sorted(name for name in {Path(path).name for path in record.files.values()} | {RUN_FILE}
                   if (run_dir / name).is_file())
    return table(["file"], [[link(name, name)] for name in names])
