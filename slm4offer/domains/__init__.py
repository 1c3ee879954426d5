"""Load and validate a domain: one YAML file describing personas, offers and preferences.

A domain is data, not code: adding one means adding a YAML file (schema in README.md beside
this file). Everything is checked on load, and an error names the file and the YAML path of the
bad entry (`finance.yaml: preferences.persona.age.yung: unknown segment ...`), because a typo
in a preference weight would otherwise silently change the world every later number rests on.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import yaml

from slm4offer.errors import InvalidValue, MissingFile

BUILTIN_DIR = Path(__file__).parent
ATTRIBUTE_TYPES = ("integer", "categorical", "multi")
DISTRIBUTIONS = {"normal": ("mean", "sd"), "lognormal": ("median", "sigma"), "uniform": ()}
_PLACEHOLDER = re.compile(r"\{(\w+)(?::(a))?\}")  # {name} or {name:a} (with "a"/"an")


class DomainError(InvalidValue):
    """A domain file that does not follow the schema; the message names file and YAML path."""


@dataclass(frozen=True)
class Attribute:
    """One persona attribute. Integer attributes are grouped into named `segments`."""

    name: str
    type: str
    values: dict[str, float]                  # categorical/multi: value -> base weight
    distribution: dict                        # integer: {kind, parameters}
    range: tuple[int, int]                    # integer: inclusive bounds
    segments: dict[str, tuple[int, int]]      # integer: segment -> inclusive bounds
    round_to: int                             # integer: rounding step (income to 500)
    count: tuple[int, int]                    # multi: how many values a persona holds
    format: str                               # integer: Python format spec for text
    depends_on: dict | None                   # {attribute, factors | shift}

    def segment_of(self, value: int) -> str:
        for name, (low, high) in self.segments.items():
            if low <= value <= high:
                return name
        raise InvalidValue(f"{self.name}={value}: in no segment of {self.segments}")

    @property
    def levels(self) -> list[str]:
        """Segments (integer) or values (categorical, multi): what preferences can refer to."""
        return list(self.segments) if self.type == "integer" else list(self.values)


@dataclass(frozen=True)
class SlotValue:
    key: str
    text: str                # surface form used when rendering
    phrases: tuple[str, ...]  # lower-case phrases that identify it when parsing


@dataclass(frozen=True)
class Campaign:
    targets_on: tuple[str, ...]  # persona attributes the historical targeting used
    popularity: float            # weight of an offer's general appeal in the policy
    temperature: float           # softmax temperature of the policy
    exploration: float           # share of shown offers drawn uniformly at random


@dataclass(frozen=True)
class Domain:
    name: str
    description: str
    source: Path
    attributes: dict[str, Attribute]
    persona_templates: tuple[str, ...]
    slots: dict[str, dict[str, SlotValue]]
    allowed_by: str | None                        # slot whose value restricts the others
    allowed: dict[str, dict[str, tuple[str, ...]]]  # value of allowed_by -> slot -> values
    offer_templates: tuple[str, ...]
    intercept: float
    noise_sd: float
    offer_weights: dict[str, dict[str, float]]     # slot -> value -> weight
    persona_weights: dict[str, dict[str, dict[str, dict[str, float]]]]  # attr->level->slot->value
    campaign: Campaign

    @cached_property
    def phrase_index(self) -> tuple[re.Pattern, dict[str, tuple[str, str]]]:
        """One regex over every slot phrase (longest first) and phrase -> (slot, value)."""
        owner = {p: (s, v.key) for s, vals in self.slots.items() for v in vals.values()
                 for p in v.phrases}
        alternatives = "|".join(re.escape(p) for p in sorted(owner, key=len, reverse=True))
        return re.compile(rf"(?<![\w$%])(?:{alternatives})(?![\w%])"), owner

    def is_allowed(self, slots: dict[str, str]) -> bool:
        if self.allowed_by is None:
            return True
        rules = self.allowed.get(slots[self.allowed_by], {})
        return all(slots[s] in vals for s, vals in rules.items())


def available_domains() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def domain_path(domain: str | Path) -> Path:
    """Resolve a built-in name or a YAML path to a file, or raise listing the built-ins."""
    path = Path(domain)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise MissingFile(f"{path}: domain file not found")
        return path.resolve()
    builtin = BUILTIN_DIR / f"{domain}.yaml"
    if not builtin.is_file():
        raise DomainError(f"unknown domain {str(domain)!r}; built-in domains: "
                          f"{', '.join(available_domains())}, or give a path to a .yaml file")
    return builtin


def domain_digest(domain: str | Path) -> str:
    """Hash of the domain file's bytes: editing the YAML invalidates cached datasets."""
    return hashlib.sha256(domain_path(domain).read_bytes()).hexdigest()[:16]


def load_domain(domain: str | Path) -> Domain:
    path = domain_path(domain)
    return _load(path, path.stat().st_mtime_ns)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (YAML keeps the
    last one silently, so a duplicated weight would quietly replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise DomainError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice in one "
                                  f"mapping (first on line {seen[key]})")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


@lru_cache(maxsize=16)
def _load(path: Path, _mtime: int) -> Domain:
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    except DomainError as exc:
        raise DomainError(f"{path.name}: {exc}") from None
    except yaml.YAMLError as exc:
        raise DomainError(f"{path.name}: not valid YAML: {exc}") from exc
    return _Parser(path).domain(raw)


# The keys each part of a domain file may hold; any other key is an error with a did-you-mean.
INTEGER_KEYS = {"type", "distribution", "range", "segments", "round_to", "format", "depends_on"}
CHOICE_KEYS = {"type", "values", "depends_on"}
SECTION_KEYS = {
    "top level": {"name", "description", "persona", "offers", "preferences", "campaign"},
    "persona": {"attributes", "templates"},
    "offers": {"slots", "allowed", "templates"},
    "preferences": {"intercept", "noise_sd", "offer", "persona"},
    "campaign": {"targets_on", "popularity", "temperature", "exploration"},
}
ATTRIBUTE_KEYS = {"integer": INTEGER_KEYS, "categorical": CHOICE_KEYS, "multi": CHOICE_KEYS | {"count"}}


class _Parser:
    """Turns the raw YAML into a `Domain`, checking every reference on the way."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, message: str) -> DomainError:
        return DomainError(f"{self.path.name}: {where}: {message}")

    def keys(self, mapping, where: str, known: set[str]) -> None:
        """Every key of `mapping` is one of `known`; else an error naming it, with a did-you-mean."""
        if not isinstance(mapping, dict):
            return  # the caller's `get` reports the wrong type
        for key in mapping:
            if key not in known:
                hint = difflib.get_close_matches(str(key), sorted(known), n=1)
                raise self.fail(f"{where}.{key}" if where != "top level" else str(key),
                                "unknown key" + (f"; did you mean {hint[0]!r}?" if hint else "")
                                + f" (known: {', '.join(sorted(known))})")

    def get(self, mapping, key: str, where: str, kind: type | tuple = dict, default=...):
        if not isinstance(mapping, dict):
            raise self.fail(where, f"expected a mapping, got {type(mapping).__name__}")
        if key not in mapping:
            if default is not ...:
                return default
            raise self.fail(f"{where}.{key}" if where else key, "missing")
        value = mapping[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kind) or isinstance(value, bool) and bool not in kinds:
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(f"{where}.{key}" if where else key,
                            f"expected {names}, got {type(value).__name__} ({value!r})")
        return value

    def domain(self, raw) -> Domain:
        if not isinstance(raw, dict):
            raise self.fail("top level", "expected a mapping with persona, offers, preferences")
        self.keys(raw, "top level", SECTION_KEYS["top level"])
        name = self.get(raw, "name", "", str)
        persona = self.get(raw, "persona", "")
        self.keys(persona, "persona", SECTION_KEYS["persona"])
        attributes: dict[str, Attribute] = {}
        for attr_name, spec in self.get(persona, "attributes", "persona").items():
            attributes[attr_name] = self.attribute(attr_name, spec, attributes)
        persona_templates = self.templates(persona, "persona", set(attributes))
        slots, allowed_by, allowed, offer_templates = self.offers(self.get(raw, "offers", ""))
        prefs = self.get(raw, "preferences", "")
        self.keys(prefs, "preferences", SECTION_KEYS["preferences"])
        offer_weights = self.slot_weights(self.get(prefs, "offer", "preferences", default={}),
                                          "preferences.offer", slots)
        persona_weights: dict[str, dict] = {}
        for attr_name in self.get(prefs, "persona", "preferences"):
            where = f"preferences.persona.{attr_name}"
            if attr_name not in attributes:
                raise self.fail(where, f"unknown attribute (known: {', '.join(attributes)})")
            attr = attributes[attr_name]
            persona_weights[attr_name] = {}
            for level, weights in self.get(prefs["persona"], attr_name, "preferences.persona").items():
                if level not in attr.levels:
                    what = "segment" if attr.type == "integer" else "value"
                    raise self.fail(f"{where}.{level}", f"unknown {what} of {attr_name!r} "
                                    f"(known: {', '.join(attr.levels)})")
                persona_weights[attr_name][level] = self.slot_weights(weights, f"{where}.{level}", slots)
        campaign = self.get(raw, "campaign", "")
        self.keys(campaign, "campaign", SECTION_KEYS["campaign"])
        targets = tuple(self.get(campaign, "targets_on", "campaign", list))
        for t in targets:
            if t not in attributes:
                raise self.fail("campaign.targets_on", f"unknown attribute {t!r}")
        exploration = float(self.get(campaign, "exploration", "campaign", (int, float)))
        if not 0 <= exploration <= 1:
            raise self.fail("campaign.exploration", f"must be in [0, 1], got {exploration}")
        return Domain(
            name=name,
            description=str(raw.get("description", "")).strip(),
            source=self.path,
            attributes=attributes,
            persona_templates=persona_templates,
            slots=slots,
            allowed_by=allowed_by,
            allowed=allowed,
            offer_templates=offer_templates,
            intercept=float(self.get(prefs, "intercept", "preferences", (int, float))),
            noise_sd=float(self.get(prefs, "noise_sd", "preferences", (int, float))),
            offer_weights=offer_weights,
            persona_weights=persona_weights,
            campaign=Campaign(
                targets_on=targets,
                popularity=float(self.get(campaign, "popularity", "campaign", (int, float))),
                temperature=float(self.get(campaign, "temperature", "campaign", (int, float))),
                exploration=exploration,
            ),
        )

    def attribute(self, name: str, spec, earlier: dict[str, Attribute]) -> Attribute:
        where = f"persona.attributes.{name}"
        kind = self.get(spec, "type", where, str)
        if kind not in ATTRIBUTE_TYPES:
            raise self.fail(f"{where}.type", f"{kind!r} is not one of {', '.join(ATTRIBUTE_TYPES)}")
        self.keys(spec, where, ATTRIBUTE_KEYS[kind])
        values, distribution, segments = {}, {}, {}
        low_high, count = (0, 0), (1, 1)
        if kind == "integer":
            distribution = self.get(spec, "distribution", where)
            dist_kind = self.get(distribution, "kind", f"{where}.distribution", str)
            if dist_kind not in DISTRIBUTIONS:
                raise self.fail(f"{where}.distribution.kind",
                                f"{dist_kind!r} is not one of {', '.join(DISTRIBUTIONS)}")
            self.keys(distribution, f"{where}.distribution", {"kind", *DISTRIBUTIONS[dist_kind]})
            for param in DISTRIBUTIONS[dist_kind]:
                self.get(distribution, param, f"{where}.distribution", (int, float))
            low_high = self.pair(spec, "range", where)
            for seg, bounds in self.get(spec, "segments", where).items():
                segments[seg] = self.pair({seg: bounds}, seg, f"{where}.segments")
            covered = sorted(segments.values())
            if covered[0][0] > low_high[0] or covered[-1][1] < low_high[1] or any(
                a[1] + 1 != b[0] for a, b in zip(covered, covered[1:], strict=False)
            ):
                raise self.fail(f"{where}.segments", f"must cover the range {list(low_high)} "
                                "without gaps or overlaps")
        else:
            values = {str(k): float(v) for k, v in self.get(spec, "values", where).items()}
            if not values or any(v < 0 for v in values.values()):
                raise self.fail(f"{where}.values", "needs at least one value, weights >= 0")
            if kind == "multi":
                count = self.pair(spec, "count", where)
                if not 1 <= count[0] <= count[1] <= len(values):
                    raise self.fail(f"{where}.count", f"need 1 <= min <= max <= {len(values)}")
        depends_on = spec.get("depends_on")
        if depends_on is not None:
            self.dependency(name, kind, values, depends_on, earlier, f"{where}.depends_on")
        return Attribute(name=name, type=kind, values=values, distribution=distribution,
                         range=low_high, segments=segments,
                         round_to=int(spec.get("round_to", 1)), count=count,
                         format=str(spec.get("format", "{:,}")), depends_on=depends_on)

    def pair(self, spec, key: str, where: str) -> tuple[int, int]:
        value = self.get(spec, key, where, list)
        if len(value) != 2 or not all(isinstance(v, int) for v in value) or value[0] > value[1]:
            raise self.fail(f"{where}.{key}", f"expected [low, high] integers, got {value!r}")
        return value[0], value[1]

    def dependency(self, name, kind, values, dep, earlier, where) -> None:
        parent_name = self.get(dep, "attribute", where, str)
        self.keys(dep, where, {"attribute", "shift"} if "shift" in dep else {"attribute", "factors"})
        if parent_name not in earlier:
            raise self.fail(f"{where}.attribute", f"{parent_name!r} must be an attribute declared "
                            f"before {name!r} (declared: {', '.join(earlier) or 'none'})")
        parent = earlier[parent_name]
        if parent.type == "multi":
            raise self.fail(f"{where}.attribute", "cannot depend on a multi-valued attribute")
        key = "shift" if "shift" in dep else "factors"
        if key == "shift" and kind != "integer":
            raise self.fail(f"{where}.shift", "only integer attributes can be shifted")
        for level, effect in self.get(dep, key, where).items():
            if level not in parent.levels:
                raise self.fail(f"{where}.{key}.{level}",
                                f"unknown level of {parent_name!r} (known: {', '.join(parent.levels)})")
            if kind == "integer":
                if not isinstance(effect, int | float):
                    raise self.fail(f"{where}.{key}.{level}", "expected a number")
            else:
                for value in self.get({level: effect}, level, f"{where}.{key}"):
                    if value not in values:
                        raise self.fail(f"{where}.{key}.{level}.{value}",
                                        f"unknown value of {name!r}")

    def templates(self, section, where: str, names: set[str]) -> tuple[str, ...]:
        templates = self.get(section, "templates", where, list)
        if not templates:
            raise self.fail(f"{where}.templates", "needs at least one template")
        for i, template in enumerate(templates):
            used = {m.group(1) for m in _PLACEHOLDER.finditer(str(template))}
            if used != names:
                missing, unknown = names - used, used - names
                raise self.fail(f"{where}.templates[{i}]", "every template must use each field "
                                f"once (missing: {sorted(missing)}, unknown: {sorted(unknown)})")
        return tuple(str(t) for t in templates)

    def offers(self, section):
        slots: dict[str, dict[str, SlotValue]] = {}
        owner: dict[str, str] = {}  # phrase -> "slot.value", to reject ambiguous phrases
        self.keys(section, "offers", SECTION_KEYS["offers"])
        for slot, values in self.get(section, "slots", "offers").items():
            slots[slot] = {}
            for key, spec in self.get({slot: values}, slot, "offers.slots").items():
                where = f"offers.slots.{slot}.{key}"
                text = spec if isinstance(spec, str) else self.get(spec, "text", where, str)
                self.keys(spec, where, {"text", "aliases"})
                aliases = [] if isinstance(spec, str) else spec.get("aliases", [])
                phrases = tuple(dict.fromkeys(_normalise(p) for p in [_strip_article(text), *aliases]))
                for phrase in phrases:
                    if phrase in owner and owner[phrase] != f"{slot}.{key}":
                        raise self.fail(where, f"phrase {phrase!r} also names {owner[phrase]}")
                    owner[phrase] = f"{slot}.{key}"
                slots[slot][key] = SlotValue(key=key, text=text, phrases=phrases)
        allowed_by, allowed = None, {}
        if "allowed" in section:
            (allowed_by, rules), *rest = self.get(section, "allowed", "offers").items()
            if rest or allowed_by not in slots:
                raise self.fail("offers.allowed", "must hold exactly one slot name")
            for value, per_slot in rules.items():
                where = f"offers.allowed.{allowed_by}.{value}"
                if value not in slots[allowed_by]:
                    raise self.fail(where, f"unknown value of slot {allowed_by!r}")
                allowed[value] = {}
                for slot, vals in per_slot.items():
                    if slot not in slots or slot == allowed_by:
                        raise self.fail(f"{where}.{slot}", "unknown slot")
                    for v in vals:
                        if v not in slots[slot]:
                            raise self.fail(f"{where}.{slot}", f"unknown value {v!r}")
                    allowed[value][slot] = tuple(vals)
        return slots, allowed_by, allowed, self.templates(section, "offers", set(slots))

    def slot_weights(self, weights, where: str, slots) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for slot, per_value in (weights or {}).items():
            if slot not in slots:
                raise self.fail(f"{where}.{slot}", f"unknown slot (known: {', '.join(slots)})")
            out[slot] = {}
            for value, weight in per_value.items():
                if value not in slots[slot]:
                    raise self.fail(f"{where}.{slot}.{value}", f"unknown value of slot {slot!r}")
                if not isinstance(weight, int | float) or isinstance(weight, bool):
                    raise self.fail(f"{where}.{slot}.{value}", f"weight must be a number, got {weight!r}")
                out[slot][value] = float(weight)
        return out


def render(template: str, fields: dict[str, str]) -> str:
    """Fill `{name}` and `{name:a}` (indefinite article added) placeholders."""

    def fill(match: re.Match) -> str:
        text = fields[match.group(1)]
        if match.group(2):
            text = ("an " if text[:1].lower() in "aeiou" else "a ") + text
        return text

    return _PLACEHOLDER.sub(fill, template)


def _strip_article(text: str) -> str:
    return re.sub(r"^(a|an|the)\s+", "", text.strip(), flags=re.IGNORECASE)


def _normalise(text: str) -> str:
    """Lower-case, keep letters/digits/%/$/./-, one space between words: the parser's view."""
    text = re.sub(r"[^\w%$.\-]+", " ", text.lower())
    return re.sub(r"\s+", " ", re.sub(r"\.(?!\d)", " ", text)).strip()


def describe(domain: Domain) -> str:
    """A Markdown overview of a domain: attributes, offer slots, size of the offer space."""
    lines = [f"**{domain.name}**: {domain.description}", "", "| persona attribute | type | levels |",
             "|---|---|---|"]
    for a in domain.attributes.values():
        lines.append(f"| {a.name} | {a.type} | {', '.join(a.levels)} |")
    lines += ["", "| offer slot | values |", "|---|---|"]
    for slot, values in domain.slots.items():
        lines.append(f"| {slot} | {', '.join(v.text for v in values.values())} |")
    n_weights = sum(len(v) for lv in domain.persona_weights.values() for s in lv.values()
                    for v in s.values())
    lines += ["", f"{len(domain.persona_templates)} persona and {len(domain.offer_templates)} offer "
              f"templates; {n_weights} persona-offer preference weights; the historical campaign "
              f"targeted on {', '.join(domain.campaign.targets_on)} and explored "
              f"{domain.campaign.exploration:.0%} of the time."]
    return "\n".join(lines)
