"""The mission tokenizer: a small word-level vocabulary trained offline on BabyAI missions.

JAT used GPT-2's tokenizer, which needs the Hub. BabyAI missions come from a tiny grammar
("go to the red ball, then open a door on your left"), so a word-level tokenizer trained
with `tokenizers` on the missions in the training data, seeded with minigrid's own words so
that colours or objects absent from a small dataset still get a token, covers them exactly.
It is saved next to the model (`tokenizer.json`) and loads without a network.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

PAD, UNK = "[PAD]", "[UNK]"
TEMPLATE_WORDS = (
    "go to the a an pick up open put next to , then after you and on your in front of behind "
    "left right object get traverse rooms goal unlock"
)


def seed_words() -> list[str]:
    """Words of minigrid's BabyAI grammar (colours, object types, locations, verbs)."""
    from minigrid.core.constants import COLOR_NAMES, OBJECT_TO_IDX
    from minigrid.envs.babyai.core.verifier import LOC_NAMES

    return [TEMPLATE_WORDS, " ".join(COLOR_NAMES), " ".join(OBJECT_TO_IDX), " ".join(LOC_NAMES)]


class MissionTokenizer:
    """Mission strings -> fixed-length id arrays (padded with 0, unknown words -> 1)."""

    def __init__(self, fast: PreTrainedTokenizerFast, max_tokens: int) -> None:
        self.fast = fast
        self.max_tokens = max_tokens
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def train(cls, missions: Iterable[str], max_tokens: int = 64) -> MissionTokenizer:
        """Train on the given missions plus minigrid's grammar words."""
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(special_tokens=[PAD, UNK], min_frequency=1)
        corpus = [*seed_words(), *missions]
        tok.train_from_iterator(corpus, trainer=trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, pad_token=PAD, unk_token=UNK, model_max_length=max_tokens
        )
        log.info("mission tokenizer: %d words from %d strings", tok.get_vocab_size(), len(corpus))
        return cls(fast, max_tokens)

    @classmethod
    def load(cls, path: str | Path, max_tokens: int) -> MissionTokenizer:
        if not (Path(path) / "tokenizer.json").exists():
            raise PipelineError(
                f"{path} has no tokenizer.json: it is not a model saved by `pipeline train-model`"
            )
        return cls(PreTrainedTokenizerFast.from_pretrained(str(path)), max_tokens)

    def save(self, path: str | Path) -> None:
        self.fast.save_pretrained(str(path))

    @property
    def vocab_size(self) -> int:
        return len(self.fast)

    def encode_one(self, text: str) -> np.ndarray:
        """Ids of one mission, cached: missions repeat at every step of an episode."""
        ids = self._cache.get(text)
        if ids is None:
            encoded = self.fast(text, padding="max_length", truncation=True, max_length=self.max_tokens)
            ids = np.asarray(encoded["input_ids"], dtype=np.int64)
            self._cache[text] = ids
        return ids

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        """(N,) missions -> (N, max_tokens) int64."""
        rows = [self.encode_one(t) for t in texts]
        return np.stack(rows) if rows else np.zeros((0, self.max_tokens), dtype=np.int64)
