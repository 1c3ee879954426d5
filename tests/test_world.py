import numpy as np
import pytest

from slm4offer.data.world import (
    SimulatedCustomer,
    all_offer_slots,
    build_world,
    offer_id,
    parse_offer,
    render_offer,
    sample_personas,
)
from slm4offer.domains import BUILTIN_DIR, available_domains, load_domain


@pytest.fixture(scope="module")
def finance():
    return load_domain("finance")


@pytest.fixture(scope="module")
def small_world(finance):
    return build_world(finance, seed=0, n_personas=300, catalog_size=60, offers_per_round=4,
                       max_rounds=3, progress=False)


def test_probabilities_are_probabilities(small_world):
    p = small_world.customer.probability(small_world.personas, [o.slots for o in small_world.catalog])
    assert p.shape == (len(small_world.personas), len(small_world.catalog))
    assert np.all((p > 0) & (p < 1)) and np.isfinite(p).all()


def test_noise_is_a_function_of_the_pair_not_of_the_batch(small_world):
    c, personas, offers = small_world.customer, small_world.personas, [o.slots for o in small_world.catalog]
    full = c.probability(personas[:20], offers[:10])
    reordered = c.probability(personas[:20][::-1], offers[:10][::-1])[::-1, ::-1]
    single = c.probability([personas[7]], [offers[3]])[0, 0]
    np.testing.assert_allclose(reordered, full, rtol=1e-12)  # matmul order: last-bit differences
    assert single == pytest.approx(full[7, 3], rel=1e-12)
    ids = [p["persona_id"] for p in personas[:20]], [offer_id(o) for o in offers[:10]]
    np.testing.assert_array_equal(c.noise(*ids)[::-1], c.noise(ids[0][::-1], ids[1]))
    other_seed = SimulatedCustomer(small_world.domain, seed=1).probability(personas[:20], offers[:10])
    assert not np.allclose(other_seed, full)


def test_preference_weights_move_acceptance(tmp_path, finance):
    """Raising one weight raises exactly the matching pairs' log-odds by the same amount."""
    personas = sample_personas(finance, 200, np.random.default_rng(0))
    offers = all_offer_slots(finance)
    path = tmp_path / "finance_more_travel.yaml"
    path.write_text((BUILTIN_DIR / "finance.yaml").read_text().replace(
        "travel: {product: {travel_card: 1.8,", "travel: {product: {travel_card: 3.8,"))
    before = SimulatedCustomer(finance, 0).probability(personas, offers)
    after = SimulatedCustomer(load_domain(path), 0).probability(personas, offers)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    likes_travel = np.array(["travel" in p["interests"] for p in personas])[:, None]
    is_card = np.array([o["product"] == "travel_card" for o in offers])[None, :]
    delta = logit(after) - logit(before)
    np.testing.assert_allclose(delta[likes_travel & is_card], 2.0, atol=1e-6)
    np.testing.assert_allclose(delta[~(likes_travel & is_card)], 0.0, atol=1e-6)


def test_personas_who_like_travel_prefer_travel_cards(small_world):
    c, personas = small_world.customer, small_world.personas
    offers = [o.slots for o in small_world.catalog]
    p = c.probability(personas, offers)
    travel = np.array(["travel" in x["interests"] for x in personas])
    card = np.array([o["product"] == "travel_card" for o in offers])
    assert p[travel][:, card].mean() > p[~travel][:, card].mean() + 0.1


def test_campaign_log(small_world):
    assert small_world.dropped + len(small_world.personas) == 300
    for log in small_world.shown:
        ids = [o for o, _ in log]
        assert len(ids) == len(set(ids)), "an offer is shown at most once per persona"
        assert any(accepted for _, accepted in log), "kept personas accepted something"
    texts = [p["persona"] for p in small_world.personas]
    assert len(set(texts)) == len(texts)


def test_campaign_overshows_popular_offers(small_world):
    counts = np.bincount([small_world.catalog.index(o) for log in small_world.shown
                          for o in (next(c for c in small_world.catalog if c.offer_id == oid)
                                    for oid, _ in log)], minlength=len(small_world.catalog))
    top = np.sort(counts)[::-1][: len(counts) // 10]
    assert top.sum() / counts.sum() > 0.15  # uniform display would give 10%


@pytest.mark.parametrize("name", available_domains())
def test_render_parse_round_trip_on_every_template(name):
    domain = load_domain(name)
    for slots in all_offer_slots(domain):
        for template in range(len(domain.offer_templates)):
            parsed = parse_offer(domain, render_offer(domain, slots, template))
            assert parsed.ok and parsed.offer_id == offer_id(slots), (slots, template, parsed)


@pytest.mark.parametrize("text, reason", [
    ("", "empty text"), (None, "empty text"), (42, "empty text"),
    ("Free pizza for everyone!", "names no finance offer"),
    ("A mortgage and a savings account by email with a $100 bonus", "several product values named"),
    ("A travel rewards card with flexible repayments and a $50 gift card in the app",
     "'travel_card' is not offered with benefit 'flexible'"),
    ("mortgage " * 5000, "no benefit named"),
    ("¿Hipoteca? 🏠 \x00 ≠ offer", "names no finance offer"),
])
def test_parse_gives_reasons_never_exceptions(finance, text, reason):
    parsed = parse_offer(finance, text)
    assert not parsed.ok and parsed.offer_id is None and reason in parsed.reason


def test_parse_reads_paraphrases_with_aliases(finance):
    parsed = parse_offer(finance, "Your new CASHBACK CARD: 3% cashback at restaurants, a $100 bonus, in the app!")
    assert parsed.offer_id == "cashback_card|cashback|bonus_100|app"


def test_catalog_larger_than_the_domain_is_an_error(finance):
    with pytest.raises(ValueError, match="allows only 196 distinct offers"):
        build_world(finance, 0, 50, 500, 4, 3, progress=False)
