import pytest

from slm4offer.domains import BUILTIN_DIR, DomainError, available_domains, load_domain, render


def test_builtin_domains_load():
    assert {"finance", "ecommerce"} <= set(available_domains())
    for name in available_domains():
        domain = load_domain(name)
        assert domain.attributes and domain.slots and domain.persona_weights


def test_unknown_domain_lists_the_builtins():
    with pytest.raises(DomainError, match="built-in domains: ecommerce, finance"):
        load_domain("retail")


def _broken(tmp_path, old, new):
    text = (BUILTIN_DIR / "finance.yaml").read_text()
    assert old in text, old
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, message", [
    ("      young:\n        product: {student_account: 2.0",
     "      yung:\n        product: {student_account: 2.0",
     "broken.yaml: preferences.persona.age.yung: unknown segment of 'age'"),
    ("travel: {product: {travel_card: 1.8,", "travel: {product: {travel_kard: 1.8,",
     "preferences.persona.interests.travel.product.travel_kard: unknown value of slot 'product'"),
    ("aliases: [cashback card]", "aliases: [cashback card, mortgage]",
     "offers.slots.product.mortgage: phrase 'mortgage' also names product.cashback_card"),
    ("Get {product} with {benefit}", "Get {product} with",
     "offers.templates[0]: every template must use each field once"),
    ("segments: {young: [18, 29], middle: [30, 54]", "segments: {young: [18, 28], middle: [30, 54]",
     "persona.attributes.age.segments: must cover the range"),
    ("  targets_on: [age, income]", "  targets_on: [age, salary]",
     "campaign.targets_on: unknown attribute 'salary'"),
    ("    occupation:\n      type: categorical", "    occupation:\n      type: text",
     "persona.attributes.occupation.type: 'text' is not one of"),
    ("  noise_sd: 0.6", "  noise_sd: lots", "preferences.noise_sd: expected int/float"),
    ("  noise_sd: 0.6", "  noise_sd: true", "preferences.noise_sd: expected int/float, got bool"),
])
def test_schema_errors_name_the_file_and_yaml_path(tmp_path, old, new, message):
    with pytest.raises(DomainError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_domain(_broken(tmp_path, old, new))


@pytest.mark.parametrize("old, new, message", [
    ("  noise_sd: 0.6", "  noise_sdd: 0.6", "preferences.noise_sdd: unknown key; did you mean 'noise_sd'?"),
    ("      round_to: 500", "      round_too: 500", "persona.attributes.income.round_too: unknown key; did you mean "
                                                      "'round_to'?"),
    ("  exploration:", "  explortion:", "campaign.explortion: unknown key; did you mean 'exploration'?"),
    ("{kind: lognormal, median: 48000, sigma: 0.5}", "{kind: lognormal, median: 48000, sigma: 0.5, sd: 2}",
     "persona.attributes.income.distribution.sd: unknown key"),
    ("        attribute: income\n        shift:", "        attribute: income\n        shfit: {}\n        shift:",
     "persona.attributes.credit_score.depends_on.shfit: unknown key; did you mean 'shift'?"),
])
def test_every_key_at_every_level_is_checked(tmp_path, old, new, message):
    with pytest.raises(DomainError, match=message.replace("[", r"\[").replace("]", r"\]").replace("?", r"\?")):
        load_domain(_broken(tmp_path, old, new))


def test_a_key_given_twice_is_refused_not_overwritten(tmp_path):
    path = _broken(tmp_path, "  intercept:", "  intercept: 5\n  intercept:")
    with pytest.raises(DomainError, match=r"broken.yaml: line \d+: key 'intercept' is given twice in one mapping"):
        load_domain(path)


def test_dependency_must_refer_to_an_earlier_attribute(tmp_path):
    path = _broken(tmp_path, "        attribute: income\n        shift:", "        attribute: spending\n        shift:")
    with pytest.raises(DomainError, match="'spending' must be an attribute declared before"):
        load_domain(path)


def test_render_adds_articles():
    assert render("works as {job:a} and {job}", {"job": "accountant"}) == "works as an accountant and accountant"
