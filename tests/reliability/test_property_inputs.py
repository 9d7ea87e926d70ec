"""Property-based tests: arbitrary text through loaders and the tokenisation/model path either
works or raises the documented error — never a crash deep inside torch."""

import string

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softprompt.errors import DataError
from softprompt.tasks import Example, load_split
from softprompt.train.batches import collate, encode
from tests.core.helpers import build

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(rows=st.lists(st.tuples(st.text(string.printable + "éü中文🙂", max_size=40), st.sampled_from(["0", "1", "2", "", "x"])),
                     max_size=8))
def test_sst2_tsv_rows_load_or_raise_data_error(tmp_path_factory, rows):
    root = tmp_path_factory.mktemp("data")
    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True)
    body = "sentence\tlabel\n" + "".join(f"{s}\t{lab}\n" for s, lab in rows)
    (folder / "train.tsv").write_text(body, encoding="utf-8")
    try:
        examples = load_split("sst2", "train", root)
    except DataError as err:
        assert "train.tsv" in str(err) and "line" in str(err)
        return
    assert all(e.label in (0, 1) for e in examples)
    assert len(examples) == len(body.split("\n")) - 2  # header and the final newline


MODELS = {name: build(name, method).eval() for name, method in [("tiny-bert", "id-spam"), ("tiny-llama", "p-tuning-v2")]}


@FAST
@given(texts=st.lists(TEXT, min_size=1, max_size=4), pair=st.one_of(st.none(), TEXT), max_length=st.integers(8, 64))
def test_any_unicode_text_encodes_and_runs(texts, pair, max_length):
    for model in MODELS.values():
        tok = model.backbone.tokenizer
        examples = [Example(t, pair, 0, None, f"x:{i}") for i, t in enumerate(texts)]
        enc = encode(tok, examples, max_length)
        assert all(len(ids) <= max_length for ids in enc.input_ids)
        full = tok(texts, [pair] * len(texts))["input_ids"] if pair is not None else tok(texts)["input_ids"]
        assert enc.truncated == sum(len(ids) > max_length for ids in full)  # "" as a pair still adds its separators
        batch = collate(enc, list(range(len(texts))), tok.pad_token_id, tok.padding_side)
        with torch.no_grad():
            logits = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).logits
        assert logits.shape == (len(texts), 2) and bool(torch.isfinite(logits).all())
        assert np.array_equal(enc.labels, np.zeros(len(texts)))
