"""`pipeline.model.tokenizer`: BabyAI missions to fixed-length ids, trained and loaded offline."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.model.tokenizer import PAD, UNK, MissionTokenizer, seed_words

MISSIONS = ["go to the red ball", "pick up a purple key", "open the door on your left"]


@pytest.fixture(scope="module")
def tokenizer() -> MissionTokenizer:
    return MissionTokenizer.train(MISSIONS, max_tokens=8)


def _ids(tokenizer: MissionTokenizer, *words: str) -> list[int]:
    return [tokenizer.fast.convert_tokens_to_ids(w) for w in words]


def test_a_mission_becomes_its_word_ids_padded_with_zeros(tokenizer):
    ids = tokenizer.encode_one("go to the red ball")
    assert ids.dtype == np.int64 and ids.shape == (8,)
    assert ids.tolist() == [*_ids(tokenizer, "go", "to", "the", "red", "ball"), 0, 0, 0]
    assert min(ids[:5]) >= 2  # 0 and 1 are the padding and unknown tokens
    assert _ids(tokenizer, PAD, UNK) == [0, 1]


def test_unknown_words_are_one_and_case_and_spacing_do_not_matter(tokenizer):
    assert tokenizer.encode_one("go to the zebra").tolist()[:4] == [*_ids(tokenizer, "go", "to", "the"), 1]
    np.testing.assert_array_equal(
        tokenizer.encode_one("Go  TO the Red ball"), tokenizer.encode_one("go to the red ball")
    )
    # the comma of "..., then ..." missions is a token of its own
    assert tokenizer.encode_one("open a door, then go to a key").tolist()[3] == _ids(tokenizer, ",")[0]


def test_minigrids_words_have_tokens_even_if_no_mission_uses_them(tokenizer):
    for word in ("grey", "box", "behind", "unlock", "traverse", "goal"):
        assert not any(word in mission for mission in MISSIONS)
        assert tokenizer.encode_one(word)[0] >= 2, word
    assert any("purple" in words for words in seed_words())


def test_long_missions_are_cut_to_max_tokens(tokenizer):
    ids = tokenizer.encode_one("go to the red ball then pick up a purple key and open the door")
    assert ids.shape == (8,) and 0 not in ids.tolist()
    assert ids.tolist() == tokenizer.encode_one("go to the red ball then pick up").tolist()


def test_a_batch_stacks_missions_and_an_empty_batch_keeps_its_width(tokenizer):
    batch = tokenizer.encode(["go to the red ball", "open the door on your left"])
    assert batch.shape == (2, 8) and batch.dtype == np.int64
    np.testing.assert_array_equal(batch[1], tokenizer.encode_one("open the door on your left"))
    empty = tokenizer.encode([])
    assert empty.shape == (0, 8) and empty.dtype == np.int64


def test_save_and_load_give_the_same_ids_offline(tokenizer, tmp_path):
    tokenizer.save(tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    loaded = MissionTokenizer.load(tmp_path, max_tokens=8)
    assert loaded.vocab_size == tokenizer.vocab_size
    for mission in [*MISSIONS, "put the grey box behind you", "zebra"]:
        np.testing.assert_array_equal(loaded.encode_one(mission), tokenizer.encode_one(mission))
    wider = MissionTokenizer.load(tmp_path, max_tokens=12)
    assert (
        wider.encode_one("go to the red ball").tolist()[:8]
        == tokenizer.encode_one("go to the red ball").tolist()
    )
    assert wider.encode_one("go to the red ball").shape == (12,)


def test_the_vocabulary_is_the_grammar_plus_the_missions(tokenizer):
    grammar_only = MissionTokenizer.train([], max_tokens=8)
    assert tokenizer.vocab_size == grammar_only.vocab_size  # these missions use grammar words only
    extended = MissionTokenizer.train([*MISSIONS, "fetch the zebra"], max_tokens=8)
    assert extended.vocab_size == tokenizer.vocab_size + 2  # "fetch" and "zebra"
    assert extended.encode_one("zebra")[0] >= 2


def test_loading_a_folder_without_a_tokenizer_is_refused(tmp_path):
    with pytest.raises(PipelineError) as info:
        MissionTokenizer.load(tmp_path, max_tokens=8)
    assert (
        str(info.value)
        == f"{tmp_path} has no tokenizer.json: it is not a model saved by `pipeline train-model`"
    )
