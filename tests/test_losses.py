import math

import pytest
import torch

from slm4offer.config import load_config
from slm4offer.model.inference import pair_similarity
from slm4offer.model.losses import (
    LOSS_TERMS,
    candidate_mask,
    dual_loss,
    in_batch_offers,
    info_nce,
    loss_weights,
    sft_settings,
)
from slm4offer.model.modeling import ModelSource, build_model
from slm4offer.model.training import OfferCollator, kind_config

TEXTS = ["Customer aged 30, likes travel.", "Customer aged 60, careful saver.",
         "Get a travel card with air miles.", "Open a savings account with no fees.",
         "Get home insurance with a gift card.", "Open an investment account by email."]


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("smoke", init="scratch", d_model=16, d_ff=32, num_layers=1, num_heads=2,
                      d_kv=8, vocab_size=120, dropout=0.0, projection_dim=8)
    model, tok = build_model(cfg, ModelSource("scratch", "", "test"), tokenizer_texts=TEXTS * 5)
    ids = lambda text: tok(text)["input_ids"]  # noqa: E731
    examples = [  # persona 0 accepted offers 10 and 11 (two examples); persona 1 accepted 10
        {"input_ids": ids(TEXTS[0]), "labels": ids(TEXTS[2]), "offer_key": 10, "accepted_keys": [10, 11],
         "negative_labels": [ids(TEXTS[4]), ids(TEXTS[5])], "negative_keys": [12, 13]},
        {"input_ids": ids(TEXTS[0]), "labels": ids(TEXTS[3]), "offer_key": 11, "accepted_keys": [10, 11],
         "negative_labels": [ids(TEXTS[4]), ids(TEXTS[5])], "negative_keys": [12, 13]},
        {"input_ids": ids(TEXTS[1]), "labels": ids(TEXTS[2]), "offer_key": 10, "accepted_keys": [10],
         "negative_labels": [ids(TEXTS[3])], "negative_keys": [11]},
    ]
    return model, OfferCollator(tok.pad_token_id)(examples), tok


def test_info_nce_matches_hand_computation():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    c = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    tau = 0.5
    s = 1 / math.sqrt(2)  # cos(p0, c0) = cos(p1, c0)
    row0 = -math.log(math.exp(s / tau) / (math.exp(s / tau) + math.exp(0.0) + math.exp(-1 / tau)))
    row1 = -math.log(math.exp(1 / tau) / (math.exp(s / tau) + math.exp(1 / tau)))
    assert info_nce(p, c, valid, tau).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_masked_candidates_do_not_change_the_loss():
    p, c = torch.randn(2, 4), torch.randn(3, 4)
    valid = torch.tensor([[True, False, True], [False, True, True]])
    before = info_nce(p, c, valid, 0.1)
    c2 = c.clone()
    c2[1] += 100.0  # column 1 is masked for row 0; row 1's positive is column 1 and must change
    valid_row0 = torch.tensor([[True, False, True]])
    assert info_nce(p[:1], c2, valid_row0, 0.1) == pytest.approx(info_nce(p[:1], c, valid_row0, 0.1).item())
    assert info_nce(p, c2, valid, 0.1) != pytest.approx(before.item())


def test_candidate_mask_keeps_own_candidates_less_accepted_offers_and_repeats():
    owner = torch.tensor([0, 1, 2, 0, 0, 1, 1, 2, 0, 2])
    keys = torch.tensor([10, 11, 10, 12, 13, 12, 13, 11, 12, 10])
    accepted = torch.tensor([[10, 11], [10, 11], [10, -1]])
    valid = candidate_mask(owner, keys, accepted)
    assert valid.diagonal().all()
    # row 0 owns columns 0, 3, 4, 8: column 8 repeats offer 12 of column 3
    assert valid[0].tolist() == [True, False, False, True, True, False, False, False, False, False]
    # row 2 owns 2, 7, 9: offer 11 is a negative for it; column 9 is its accepted offer 10 again
    assert valid[2].tolist() == [False, False, True, False, False, False, False, True, False, False]
    assert not valid[1, 0]  # another persona's candidate never counts


def test_in_batch_offers_are_the_next_examples_positives_never_ones_own():
    labels = torch.tensor([[5, 1], [6, 1], [7, 1]])
    got, owner, keys = in_batch_offers(labels, torch.tensor([50, 60, 70]), in_batch=3)
    assert owner.tolist() == [0, 0, 1, 1, 2, 2]  # at most batch - 1 others per example
    assert keys.tolist() == [60, 70, 70, 50, 50, 60]
    assert got[:, 0].tolist() == [6, 7, 7, 5, 5, 6]


def test_training_scores_a_pair_as_the_reranker_does(tiny):
    """Every candidate InfoNCE scores for a persona (positive, hard negative, other examples'
    offers) has, at training time, the similarity `pair_similarity` gives that (persona, offer)."""
    model, batch, tok = tiny
    model.eval()
    parts = dual_loss(model, batch, weights(0.5), tau=0.1)
    offer_text = {10: TEXTS[2], 11: TEXTS[3], 12: TEXTS[4], 13: TEXTS[5]}
    persona_text = [TEXTS[0], TEXTS[0], TEXTS[1]]
    keys = torch.cat([batch["offer_keys"], batch["negative_keys"]]).tolist()
    keys += in_batch_offers(batch["labels"], batch["offer_keys"], 3)[2].tolist()
    assert parts.owner is not None and parts.similarity is not None and len(keys) == len(parts.owner) == 14
    expected = pair_similarity(model, tok, [persona_text[i] for i in parts.owner.tolist()],
                               [offer_text[k] for k in keys])
    assert torch.allclose(parts.similarity, torch.from_numpy(expected), atol=1e-5)
    # and the loss reads those very scores: InfoNCE from them alone is the loss's InfoNCE
    valid = candidate_mask(parts.owner, torch.tensor(keys), batch["accepted_keys"])
    logits = torch.full((3, 14), float("-inf"))
    logits[parts.owner, torch.arange(14)] = parts.similarity / 0.1
    manual = torch.nn.functional.cross_entropy(logits.masked_fill(~valid, float("-inf")), torch.arange(3))
    assert manual.item() == pytest.approx(parts.terms["infonce"].item(), rel=1e-5)


def test_lambda_zero_is_exactly_plain_cross_entropy(tiny):
    model, batch, _ = tiny
    plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  labels=batch["labels"]).loss
    parts = dual_loss(model, batch, weights(0.0), tau=0.1)
    assert list(parts.terms) == ["ce"]
    assert torch.equal(parts.loss, plain)


def test_shared_decoder_pass_gives_the_same_ce(tiny):
    model, batch, _ = tiny
    plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  labels=batch["labels"]).loss
    parts = dual_loss(model, batch, weights(0.5), tau=0.1)
    assert parts.terms["ce"].item() == pytest.approx(plain.item(), abs=1e-6)
    terms = {name: value.item() for name, value in parts.terms.items()}
    assert parts.loss.item() == pytest.approx(0.5 * terms["infonce"] + 0.5 * terms["ce"], rel=1e-6)


def test_one_encoder_pass_per_persona_and_one_batched_decoder_pass(tiny):
    model, batch, _ = tiny
    calls = {"encoder": [], "decoder": []}
    hooks = [getattr(model, name).register_forward_hook(
        lambda mod, args, kwargs, out, name=name: calls[name].append(kwargs["input_ids"].shape[0]),
        with_kwargs=True) for name in calls]
    try:
        dual_loss(model, batch, weights(0.5), tau=0.1)
        # 3 positives + 5 hard negatives + 2 other examples' offers for each of 3 personas
        assert calls == {"encoder": [3], "decoder": [3 + 5 + 6]}
        for mode, decoded in (("in_batch", 3 + 6), ("hard", 3 + 5)):
            calls["encoder"].clear(), calls["decoder"].clear()
            dual_loss(model, batch, weights(0.5), tau=0.1, mode=mode)
            assert calls == {"encoder": [3], "decoder": [decoded]}
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_gradients_reach_encoder_decoder_and_projection(tiny, lam):
    model, batch, _ = tiny
    model.zero_grad()
    dual_loss(model, batch, weights(lam), tau=0.1).loss.backward()
    for name in ("encoder.block.0.layer.0.SelfAttention.q.weight",
                 "decoder.block.0.layer.1.EncDecAttention.k.weight", "projection.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    model.zero_grad()


def weights(lam: float) -> dict[str, float]:
    """The paper's weights: L = lam * InfoNCE + (1 - lam) * CE."""
    return {"infonce": lam, "ce": 1 - lam}


def test_the_weights_follow_the_paper_and_sft_switches_every_contrastive_term_off():
    assert loss_weights(load_config("smoke", lam=0.3)) == pytest.approx(weights(0.3))
    sft = kind_config(load_config("smoke", lam=0.3), "sft")
    contrastive = [name for name, term in LOSS_TERMS.items() if term.contrastive]
    assert contrastive and all(loss_weights(sft)[name] == 0 for name in contrastive)
    assert loss_weights(sft)["ce"] == 1 and sft_settings() == {"lam": 0.0}
    with pytest.raises(ValueError, match="is the SFT baseline"):
        kind_config(load_config("smoke", lam=0.0), "contrastive")


def test_the_loss_is_the_weighted_sum_of_its_logged_parts(tiny):
    model, batch, _ = tiny
    parts = dual_loss(model, batch, weights(0.3), tau=0.1)
    assert set(parts.terms) == set(LOSS_TERMS)
    expected = sum(w * parts.terms[name] for name, w in weights(0.3).items())
    assert torch.allclose(parts.loss, expected)
    sft = dual_loss(model, batch, weights(0.0), tau=0.1, every_term=True)
    assert set(sft.terms) == set(LOSS_TERMS) and torch.equal(sft.loss, sft.terms["ce"])


def test_the_trainer_logs_and_sums_whatever_terms_the_loss_returns(monkeypatch):
    from slm4offer.model import losses
    from slm4offer.model.training import LossPartsLog

    monkeypatch.setitem(losses.LOSS_TERMS, "extra", losses.LossTerm(lambda cfg: 0.25, sft={"lam": 0.0}))
    parts = losses.LossParts(loss=torch.tensor(0.0), terms={"ce": torch.tensor(2.0), "infonce": torch.tensor(1.0),
                                                           "extra": torch.tensor(4.0)})
    log = LossPartsLog()
    log.add("epoch", 1.0, parts)
    means = log.pop_means("epoch")
    assert means == {"ce": 2.0, "infonce": 1.0, "extra": 4.0}
    assert losses.weighted_sum(means, {"infonce": 0.5, "ce": 0.5, "extra": 0.25}) == pytest.approx(2.5)
