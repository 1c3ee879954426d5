import pytest
import torch
from transformers import T5ForConditionalGeneration

from slm4offer.config import load_config
from slm4offer.model.modeling import (
    build_model,
    load_trained,
    resolve_source,
    scratch_config,
    train_tokenizer,
)
from slm4offer.model.offer_t5 import LaneDropout, OfferT5

TEXTS = ["Customer aged 30, likes travel.", "Get a travel card with air miles.",
         "Open a savings account with no fees."] * 4


def test_scratch_when_asked_or_when_the_hub_id_is_not_cached():
    assert resolve_source(load_config("smoke", init="scratch")).kind == "scratch"
    auto = resolve_source(load_config("smoke", pretrained_model="slm4offer-tests/not-a-cached-model"))
    assert auto.kind == "scratch" and "not in the local Hugging Face cache" in auto.reason


def test_pretrained_that_cannot_be_found_fails_early():
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        resolve_source(load_config("smoke", init="pretrained",
                                   pretrained_model="slm4offer-tests/not-a-cached-model"))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        resolve_source(load_config("smoke", pretrained_model="./no/such/model"))


def test_tokenizer_has_t5_special_ids_and_round_trips():
    tok = train_tokenizer(TEXTS, vocab_size=100)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    ids = tok(TEXTS[1])["input_ids"]
    assert ids[-1] == 1
    assert tok.decode(ids, skip_special_tokens=True) == TEXTS[1]


def _tiny_t5_folder(path):
    """A random tiny T5 and tokenizer saved the way a downloaded checkpoint is."""
    tok = train_tokenizer(TEXTS, vocab_size=100)
    cfg = load_config("smoke", d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)
    config = scratch_config(cfg, len(tok))
    torch.manual_seed(1)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tok.save_pretrained(path)
    return T5ForConditionalGeneration.from_pretrained(path)


def test_pretrained_weights_load_by_path(tmp_path):
    reference = _tiny_t5_folder(tmp_path / "tiny-t5")
    cfg = load_config("smoke", pretrained_model=str(tmp_path / "tiny-t5"), projection_dim=8)
    source = resolve_source(cfg)
    assert source.kind == "pretrained" and source.location == str((tmp_path / "tiny-t5").resolve())
    model, tok = build_model(cfg, source)
    assert isinstance(model, OfferT5) and model.projection.weight.shape == (8, 16)
    assert torch.equal(model.encoder.block[0].layer[0].SelfAttention.q.weight,
                       reference.encoder.block[0].layer[0].SelfAttention.q.weight)
    assert len(tok) == reference.config.vocab_size


def test_folder_without_a_checkpoint_is_rejected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_source(load_config("smoke", pretrained_model=str(tmp_path / "empty")))


@pytest.mark.parametrize("pooling", ["mean", "eos"])
def test_pooling_and_projection_survive_save_and_load(tmp_path, pooling):
    cfg = load_config("smoke", init="scratch", d_model=16, d_ff=32, num_layers=1, num_heads=2,
                      d_kv=8, pooling=pooling, projection_dim=4)
    model, tok = build_model(cfg, resolve_source(cfg), tokenizer_texts=TEXTS)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, _ = load_trained(tmp_path / "m")
    assert loaded.pooling == pooling
    assert torch.equal(loaded.projection.weight, model.projection.weight)


def test_pooling_reads_only_unmasked_positions():
    config = scratch_config(load_config("smoke", d_model=4, d_ff=8, num_layers=1, num_heads=1, d_kv=4), 10)
    states = torch.arange(24, dtype=torch.float).reshape(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    config.update({"offer_pooling": "mean", "offer_projection_dim": 0})
    mean = OfferT5(config).embed(states, mask)
    assert torch.equal(mean[0], states[0, :2].mean(0)) and torch.equal(mean[1], states[1].mean(0))
    config.update({"offer_pooling": "eos"})
    eos = OfferT5(config).embed(states, mask)
    assert torch.equal(eos[0], states[0, 1]) and torch.equal(eos[1], states[1, 2])


def test_training_from_a_pretrained_folder_records_it(tmp_path, smoke_data):
    from slm4offer.model.training import train

    _tiny_t5_folder(tmp_path / "tiny-t5")
    cfg = load_config("smoke", init="pretrained", pretrained_model=str(tmp_path / "tiny-t5"), epochs=1)
    result = train(cfg, "sft", progress=False)
    assert result.info["source_kind"] == "pretrained" and "-pretrained-" in result.path.parent.name
    assert result.info["source"]["location"] == str((tmp_path / "tiny-t5").resolve())


def test_lane_dropout_drops_at_its_rate_in_every_lane_and_keeps_the_expectation():
    torch.manual_seed(0)
    drop = LaneDropout(0.1).train()
    x = torch.ones(3000, 400, requires_grad=True)  # 1.2M elements: rate s.d. 2.7e-4
    y = drop(x)
    scale = 65536 / (65536 - 6554)  # the rate quantised to 1/65536
    assert y.unique().tolist() == pytest.approx([0.0, scale])
    dropped = (y == 0).float().flatten()
    for lane in range(3):  # each of a word's three lanes draws its own uniform 16 bits
        assert abs(dropped[lane::3].mean().item() - 6554 / 65536) < 2e-3
    assert abs(y.mean().item() - 1) < 2e-3
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient goes through the same mask and scale


def test_lane_dropout_is_seeded_and_off_outside_training():
    drop = LaneDropout(0.3).train()
    x = torch.randn(7, 5)
    masks = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        masks.append(drop(x) == 0)
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])
    assert drop.eval()(x) is x and LaneDropout(0.0).train()(x) is x


def test_offer_t5_uses_lane_dropout_everywhere():
    model = OfferT5(scratch_config(load_config("smoke", dropout=0.1), vocab_size=50))
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(type(m) is LaneDropout and m.p == 0.1 for m in dropouts)
