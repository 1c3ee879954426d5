import hashlib
import os

import pytest

from slm4offer.config import load_config
from slm4offer.data.dataset import SPLITS, build_dataset, load_catalog, load_data_card, split_by_persona
from slm4offer.files import atomic_dir


def tree_digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smoke_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    os.environ["SLM4OFFER_ROOT"] = str(root)  # the per-test root fixture restores it afterwards
    cfg = load_config("smoke")
    return cfg, build_dataset(cfg, progress=False), cfg.dataset_dir


def test_splits_are_disjoint_by_persona(smoke_dataset):
    _, dd, _ = smoke_dataset
    ids = {s: set(dd[s]["persona_id"]) for s in SPLITS}
    texts = {s: set(dd[s]["persona"]) for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not ids[a] & ids[b] and not texts[a] & texts[b]
    assert all(len(dd[s]) > 0 for s in SPLITS)


def test_rows_hold_positives_and_hard_negatives_from_the_catalog(smoke_dataset):
    _, dd, folder = smoke_dataset
    catalog = {o.offer_id: o.text for o in load_catalog(folder)}
    for row in dd["train"]:
        assert row["accepted_offer_ids"], "every persona has a positive"
        assert not set(row["accepted_offer_ids"]) & set(row["rejected_offer_ids"])
        assert [catalog[o] for o in row["rejected_offer_ids"]] == row["rejected_offers"]
        assert [catalog[o] for o in row["accepted_offer_ids"]] == row["accepted_offers"]


def test_data_card_agrees_with_the_rows(smoke_dataset):
    cfg, dd, folder = smoke_dataset
    card = load_data_card(folder)
    accepted = sum(len(ids) for s in SPLITS for ids in dd[s]["accepted_offer_ids"])
    rejected = sum(len(ids) for s in SPLITS for ids in dd[s]["rejected_offer_ids"])
    assert card["campaign"]["offers_accepted"] == accepted
    assert card["campaign"]["acceptance_base_rate"] == round(accepted / (accepted + rejected), 4)
    assert card["personas"]["kept"] == sum(len(dd[s]) for s in SPLITS)
    assert card["personas"]["kept"] + card["personas"]["dropped_no_acceptance"] == cfg.n_personas


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path, monkeypatch):
    digests = []
    for run, seed in [("a", 0), ("b", 0), ("c", 1)]:
        monkeypatch.setenv("SLM4OFFER_ROOT", str(tmp_path / run))
        cfg = load_config("smoke", seed=seed, n_personas=120, catalog_size=30)
        build_dataset(cfg, progress=False)
        digests.append(tree_digest(cfg.dataset_dir))
    assert digests[0] == digests[1]
    assert "train/data-00000-of-00001.arrow" in digests[0]
    assert digests[0]["train/data-00000-of-00001.arrow"] != digests[2]["train/data-00000-of-00001.arrow"]


def test_second_build_loads_the_cache(smoke_dataset, monkeypatch):
    cfg, _, folder = smoke_dataset
    monkeypatch.setenv("SLM4OFFER_ROOT", str(folder.parents[2]))
    assert cfg.dataset_dir == folder
    stamp = (folder / "dataset_dict.json").stat().st_mtime_ns
    build_dataset(cfg, progress=False)
    assert (folder / "dataset_dict.json").stat().st_mtime_ns == stamp


def test_too_few_personas_for_three_splits():
    rows = [{"persona_id": str(i)} for i in range(5)]
    with pytest.raises(ValueError, match="5 personas are too few"):
        split_by_persona(rows, 0.1, 0.1, 0)
    with pytest.raises(ValueError, match="unique"):
        split_by_persona(rows + rows, 0.3, 0.3, 0)


def test_an_interrupted_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "dataset"
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as tmp:
        (tmp / "half.arrow").write_text("partial")
        raise KeyboardInterrupt
    assert not target.exists() and list(tmp_path.iterdir()) == []


# The smoke world's content hash, committed: synthesis uses integer-seeded generators only, so every
# machine with the pinned packages must build exactly this dataset (a different CPU, thread count or
# GPU changes training, never the data).
SMOKE_DATASET_SHA256 = "e857d7a0054c77fe8d55ae53ba57935e85a77036f56dcbe0414154c70c0a96ce"


def test_the_smoke_dataset_hash_is_the_committed_one_and_the_data_card_carries_it(smoke_dataset, monkeypatch):
    from slm4offer import cache
    from slm4offer.data.dataset import export_data_card

    cfg, dd, folder = smoke_dataset
    monkeypatch.setenv("SLM4OFFER_ROOT", str(folder.parents[2]))
    assert cache.dataset_fingerprint(folder) == SMOKE_DATASET_SHA256
    card = export_data_card(cfg)
    assert SMOKE_DATASET_SHA256 in card.read_text()
    assert '"dataset_sha256": "' + SMOKE_DATASET_SHA256 in card.with_suffix(".json").read_text()
    other = load_config("smoke", seed=1)
    build_dataset(other, progress=False)
    assert cache.dataset_fingerprint(other.dataset_dir) != SMOKE_DATASET_SHA256
