"""Bring your own data: a campaign log and an offer catalog as CSV or JSONL.

Two files, the way real campaign logs look:

- interactions: one row per offer shown to a persona. Columns `persona_id`, `persona` (text),
  `offer_id`, `accepted` (`ACCEPTED` / `REJECTED` below, any case); any other column is a
  persona attribute (constant per persona) and is kept.
- offers: the catalog. Columns `offer_id`, `offer` (text).

`load_user_data` checks everything and raises one `DataValidationError` naming the file, the
physical line (as an editor numbers it: the header is line 1, blank lines count) and the field.
`build_user_dataset` then writes the same `DatasetDict` layout as `build_dataset`, all or nothing.
Templates: `examples/user_data/`.
"""

from __future__ import annotations

import csv
import json
import math
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from slm4offer.cache import PROVENANCE_FILE
from slm4offer.config import Config
from slm4offer.data import dataset as data
from slm4offer.data.world import Offer, parse_offer
from slm4offer.domains import load_domain
from slm4offer.errors import InvalidValue
from slm4offer.files import replaceable_folder

INTERACTION_COLUMNS = ("persona_id", "persona", "offer_id", "accepted")
OFFER_FILE_COLUMNS = ("offer_id", "offer")
# The one vocabulary for an accepted / rejected outcome, in campaign logs and in judge labels alike
# (case and surrounding spaces do not matter).
ACCEPTED = ("1", "true", "yes", "y", "accepted", "accept")
REJECTED = ("0", "false", "no", "n", "rejected", "reject")


class DataValidationError(InvalidValue):
    """Bad user data; `file`, `line` (the physical line, 1 = the header; None: the whole file) and
    `field` say where."""

    def __init__(self, file: Path, line: int | None, field: str | None, message: str):
        self.file, self.line, self.field = Path(file), line, field
        where = [str(self.file)]
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}")


def read_records(path: str | Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """(physical line, row) of a .csv or .jsonl file, streamed after checking the file and its columns.

    A CSV header must name each column once (a second `accepted` would silently win); a record
    spanning lines (a quoted line break) is numbered by its last line, as `csv` counts.

    Streaming keeps memory bounded by what the caller keeps, not by the file: a campaign log of
    500,000 rows validates in a few seconds (`make bench` measures it).
    """
    path = Path(path)
    if path.is_dir():
        raise DataValidationError(path, None, None, "is a directory; expected a .csv or .jsonl file")
    if not path.is_file():
        raise DataValidationError(path, None, None, "file not found")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".json"):
        raise DataValidationError(path, None, None, "expected a .csv or .jsonl file")
    lines = _utf8_lines(path)
    count = 0
    if suffix == ".csv":
        reader = csv.DictReader(lines)
        if not reader.fieldnames:
            raise DataValidationError(path, None, None, "file is empty")
        header = [name.strip() for name in reader.fieldnames]
        twice = next((name for name in header if header.count(name) > 1), None)
        if twice is not None:
            raise DataValidationError(path, 1, twice, f"the header names this column {header.count(twice)} times; "
                                      "name each column once")
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise DataValidationError(path, 1, missing[0], f"missing column (the header has: {', '.join(header)})")
        for row in reader:
            count += 1
            if None in row or any(v is None for v in row.values()):
                raise DataValidationError(path, reader.line_num, None, "wrong number of fields for the header")
            yield reader.line_num, row
        if not count:
            raise DataValidationError(path, None, None, "file has a header but no rows")
        return
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        count += 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataValidationError(path, number, None, f"not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise DataValidationError(path, number, None, "each line must be a JSON object")
        for column in required:
            if column not in record:
                raise DataValidationError(path, number, column, "missing column")
        yield number, record
    if not count:
        raise DataValidationError(path, None, None, "file is empty")


def _utf8_lines(path: Path) -> Iterator[str]:
    """The file's lines as text; bytes that are not UTF-8 are an error naming line and byte."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataValidationError(
                    path, number, None, f"byte {exc.start + 1}: {raw[exc.start:exc.start + 1]!r} is "
                    "not UTF-8 text (save the file as UTF-8)") from None
            yield line.removeprefix("\ufeff") if number == 1 else line


def _text(path: Path, line: int, field: str, value) -> str:
    """A non-empty string (ids may be integers in JSONL); NaN, null and blanks are errors."""
    if value is None or isinstance(value, float) and math.isnan(value):
        raise DataValidationError(path, line, field, "is empty (null or NaN)")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataValidationError(path, line, field,
                                  f"wrong type: expected text, got {type(value).__name__} ({value!r})")
    value = str(value).strip()
    if not value or value.lower() in ("nan", "null", "none"):
        raise DataValidationError(path, line, field, f"is empty or NaN ({value!r})")
    return value


def offer_key(text: str) -> str:
    """What makes two offer texts the same offer when no slots can be read back: the words, with
    spacing and case aside."""
    return " ".join(text.lower().split())


def offer_reader(cfg: Config):
    """text -> (offer id or None, parsed, in the catalogue). A synthetic world reads the slots back
    from the text; your own catalogue has no slots, so an offer is one of it when its text is a
    catalogue offer's (spacing and case aside)."""
    catalog = data.load_catalog(cfg.dataset_dir)
    if cfg.data:
        by_text = {offer_key(o.text): o.offer_id for o in catalog}

        def read(text: str) -> tuple[str | None, bool, bool]:
            oid = by_text.get(offer_key(text))
            return oid, oid is not None, oid is not None
        return read
    domain, ids = load_domain(cfg.domain), {o.offer_id for o in catalog}

    def parse(text: str) -> tuple[str | None, bool, bool]:
        x = parse_offer(domain, text)
        return (x.offer_id if x.ok else None), x.ok, x.ok and x.offer_id in ids
    return parse


def outcome(value) -> bool | None:
    """True (accepted) or False (rejected) in the one vocabulary of `ACCEPTED` / `REJECTED` (JSON
    booleans and the integers 1 / 0 too); None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = value.strip().lower() if isinstance(value, str) else None
    return True if word in ACCEPTED else False if word in REJECTED else None


VOCABULARY = f"{' / '.join(ACCEPTED)} for accepted, {' / '.join(REJECTED)} for rejected (any case)"


def _flag(path: Path, line: int, value, field: str = "accepted") -> bool:
    flag = outcome(value)
    if flag is not None:
        return flag
    if value is None or isinstance(value, float) and math.isnan(value):
        raise DataValidationError(path, line, field, "is empty (null or NaN)")
    raise DataValidationError(path, line, field, f"{value!r} is not an outcome: use {VOCABULARY}")


def load_offers(path: str | Path) -> list[Offer]:
    path = Path(path)
    offers: list[Offer] = []
    seen: dict[str, int] = {}
    for i, rec in read_records(path, OFFER_FILE_COLUMNS):
        oid = _text(path, i, "offer_id", rec["offer_id"])
        if oid in seen:
            raise DataValidationError(path, i, "offer_id", f"duplicated id {oid!r} (first at line {seen[oid]})")
        seen[oid] = i
        offers.append(Offer(oid, {}, _text(path, i, "offer", rec["offer"])))
    return offers


@dataclass
class UserData:
    """A validated campaign log: one row per persona (the `build_dataset` layout), the catalogue, and
    the customers left out because they accepted nothing (no positive to learn from)."""

    rows: list[dict]
    catalog: list[Offer]
    dropped_ids: list[str] = field(default_factory=list)


class DataValidationErrors(InvalidValue):
    """Several bad rows, reported together (`max_errors` of them at most); `errors` holds each one."""

    def __init__(self, errors: list[DataValidationError], stopped: bool):
        self.errors = errors
        more = f"; stopped at max_errors={len(errors)}, there may be more" if stopped else ""
        super().__init__(f"{len(errors)} problems in {errors[0].file}{more}:\n"
                         + "\n".join(f"  {e}" for e in errors))


def template_fields(template: str) -> tuple[str, ...]:
    """The columns a persona template names (`"A {age}-year-old {occupation}"` -> age, occupation)."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise InvalidValue(f"persona template {template!r}: {exc}") from None
    if not names or any(not n or not n.isidentifier() for n in names):
        raise InvalidValue(f"persona template {template!r}: name each column in braces, e.g. "
                           "'A {age}-year-old {occupation} interested in {interests}.'")
    return tuple(dict.fromkeys(names))


def persona_text(path: Path, line: int, template: str, rec: dict) -> str:
    """The persona text `template` makes of a row's columns (lists joined by ', ')."""
    values = {k: ", ".join(map(str, v)) if isinstance(v, list) else str(v).strip() for k, v in rec.items()}
    try:
        return template.format(**values).strip()
    except (ValueError, IndexError, KeyError) as exc:
        raise DataValidationError(path, line, "persona", f"the persona template does not apply: {exc}") from None


def load_user_data(interactions: str | Path, offers: str | Path, persona_template: str | None = None,
                   require_accepted: bool = False, max_errors: int = 1) -> UserData:
    """Validate both files and return their `UserData`.

    With `persona_template`, the persona text is built from the attribute columns it names (the
    file then has no `persona` column). Customers who accepted nothing are dropped and counted,
    or each one is an error with `require_accepted`. Row errors are collected up to
    `max_errors` and raised together (`DataValidationErrors`); 1 raises the first one as it is.
    """
    if max_errors < 1:
        raise InvalidValue(f"max_errors={max_errors}: must be >= 1")
    path = Path(interactions)
    template = persona_template or ""
    fields = template_fields(template) if template else ()
    required = tuple(c for c in INTERACTION_COLUMNS if c != "persona" or not fields) + fields
    catalog = load_offers(offers)
    text = {o.offer_id: o.text for o in catalog}
    canonical = {o.offer_id: o.offer_id for o in catalog}  # one id object per offer, not one per row
    personas: dict[str, dict] = {}
    first_line: dict[str, int] = {}
    errors: list[DataValidationError] = []

    def add(i: int, rec: dict) -> None:
        if fields and "persona" in rec:
            raise DataValidationError(path, i, "persona", "a persona template was given, and the file has a "
                                      "persona column too: drop the column or the template")
        pid = _text(path, i, "persona_id", rec["persona_id"])
        attrs = {k: _attribute(path, i, k, v) for k, v in rec.items() if k not in INTERACTION_COLUMNS}
        persona = persona_text(path, i, template, attrs) if fields else _text(path, i, "persona", rec["persona"])
        oid = _text(path, i, "offer_id", rec["offer_id"])
        accepted = _flag(path, i, rec["accepted"])
        if oid not in text:
            raise DataValidationError(path, i, "offer_id", f"unknown offer id {oid!r} "
                                      f"(not in {Path(offers).name})")
        known = personas.get(pid)
        if known and (oid in known["accepted_offer_ids"] or oid in known["rejected_offer_ids"]):
            raise DataValidationError(path, i, "offer_id", f"duplicated row: persona {pid!r} was "
                                      f"already shown offer {oid!r} at line {_first_line_of(path, pid, oid)}")
        if known is None:
            first_line[pid] = i
            personas[pid] = known = {"persona_id": pid, "persona": persona, **attrs,
                                     **{c: [] for c in data.OFFER_COLUMNS}}
        else:
            for name, value in [("persona", persona), *attrs.items()]:
                if known.get(name) != value:
                    raise DataValidationError(path, i, name, f"persona {pid!r} has a different "
                                              f"{name} than at line {first_line[pid]}")
        kind = "accepted" if accepted else "rejected"
        known[f"{kind}_offer_ids"].append(canonical[oid])
        known[f"{kind}_offers"].append(text[oid])

    def collect(error: DataValidationError) -> None:
        if max_errors == 1:
            raise error
        errors.append(error)
        if len(errors) >= max_errors:
            raise DataValidationErrors(errors, stopped=True)

    try:
        for i, rec in read_records(path, required):
            try:
                add(i, rec)
            except DataValidationError as exc:
                collect(exc)
    except DataValidationError as exc:  # the file itself (columns, encoding, a ragged row): reading stops
        if not errors:
            raise
        raise DataValidationErrors([*errors, exc], stopped=False) from None
    if len(errors) == 1:
        raise errors[0]
    dropped = [pid for pid, row in personas.items() if not row["accepted_offer_ids"]]
    if require_accepted:
        for pid in dropped:
            collect(DataValidationError(path, first_line[pid], "accepted",
                                        f"persona {pid!r} has no accepted offer (a positive is needed)"))
    if errors:
        raise DataValidationErrors(errors, stopped=False)
    if len(dropped) == len(personas):
        raise DataValidationError(path, None, "accepted", "no persona accepted any offer: nothing to learn from")
    return UserData([row for row in personas.values() if row["accepted_offer_ids"]], catalog, dropped)


def _first_line_of(path: Path, pid: str, oid: str) -> int:
    """Where (persona, offer) first occurs: read again on this error path, not kept for every row."""
    return next(i for i, rec in read_records(path, INTERACTION_COLUMNS)
                if str(rec["persona_id"]).strip() == pid and str(rec["offer_id"]).strip() == oid)


def _attribute(path: Path, line: int, field: str, value):
    """Extra columns are persona attributes: kept as text (lists of text in JSONL)."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return _text(path, line, field, value)


def build_user_dataset(interactions: str | Path, offers: str | Path, out: str | Path,
                       val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
                       persona_template: str | None = None, require_accepted: bool = False,
                       max_errors: int = 1) -> tuple[Path, UserData]:
    """Validate, split by persona and save as a dataset folder; nothing is written on error.

    `out` must be a new or empty folder, or a dataset folder written here before (it is replaced);
    anything else is refused before the files are read. Returns the folder and what was read."""
    out = replaceable_folder(out, ("dataset_dict.json", PROVENANCE_FILE))
    user = load_user_data(interactions, offers, persona_template, require_accepted, max_errors)
    splits = data.split_by_persona(user.rows, val_fraction, test_fraction, seed)
    dd = data.to_dataset_dict(splits, domain=None)
    card = data.data_card(dd, user.catalog, domain_label=f"user data ({Path(interactions).name})",
                          synthesised=len(user.rows) + len(user.dropped_ids), dropped=len(user.dropped_ids))
    record = {"source": {"interactions": str(interactions), "offers": str(offers)}, "name": out.name,
              "persona_template": persona_template, "dropped_no_acceptance": len(user.dropped_ids),
              "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    data.save_dataset(out, dd, user.catalog, card, record)
    return out, user


def export_campaign_log(cfg: Config, folder: str | Path, personas: int | None = None) -> tuple[Path, Path]:
    """A synthetic world's campaign written as your own data would come: interactions.csv (one row
    per offer shown, with the persona's attribute columns; lists joined by ';') and offers.csv, for
    `personas` of its personas (all by default). Trying the own-data path on it exercises every
    step at a realistic size. Returns the two files."""
    dd = data.build_dataset(cfg, progress=False)
    folder = Path(folder)
    offers = _write_csv(folder / "offers.csv", OFFER_FILE_COLUMNS,
                        ((o.offer_id, o.text) for o in data.load_catalog(cfg.dataset_dir)))
    rows = sorted((row for split in data.SPLITS for row in dd[split]), key=lambda r: r["persona_id"])
    attributes = [k for k in dd["train"].column_names if k not in ("persona_id", "persona", *data.OFFER_COLUMNS)]

    def cell(value) -> str:
        return ";".join(map(str, value)) if isinstance(value, list) else str(value)

    log = _write_csv(folder / "interactions.csv", (*INTERACTION_COLUMNS, *attributes),
                     ((row["persona_id"], row["persona"], oid, accepted, *(cell(row[a]) for a in attributes))
                      for row in rows[:personas]
                      for accepted, column in ((1, "accepted_offer_ids"), (0, "rejected_offer_ids"))
                      for oid in row[column]))
    return log, offers


def _write_csv(path: Path, header, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        out.writerows(rows)
    return path
