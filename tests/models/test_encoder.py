from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dpr.models.encoder import represent
from dpr.models.factory import build_biencoder


def test_cls_pooling_takes_position_zero() -> None:
    hidden = torch.arange(24.0).view(2, 3, 4)
    assert torch.equal(represent(hidden, pooling="cls"), hidden[:, 0])


def test_encoder_representation_is_first_token_of_last_layer(tiny_camembert: Path) -> None:
    model = build_biencoder("hf_roberta", str(tiny_camembert)).eval()
    ids = torch.tensor([[5, 40, 41, 6, 1, 1]])
    mask = ids != 1
    with torch.no_grad():
        vec = model.encode_questions(ids, mask)
        ref = model.question_model.model(input_ids=ids, attention_mask=mask.long())
    assert torch.equal(vec, ref.last_hidden_state[:, 0])
    # padding is masked: appending more pads does not change the representation
    more = torch.cat([ids, torch.ones(1, 3, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model.encode_questions(more, more != 1), vec, atol=1e-5)


def test_towers_are_independent_copies_and_projection_sets_out_size(tiny_bert: Path) -> None:
    model = build_biencoder("hf_bert", str(tiny_bert), projection_dim=16)
    assert model.question_model.out_size == 16
    q = dict(model.question_model.named_parameters())
    c = dict(model.ctx_model.named_parameters())
    assert q["model.embeddings.word_embeddings.weight"].data_ptr() != \
        c["model.embeddings.word_embeddings.weight"].data_ptr()
    assert torch.equal(q["model.embeddings.word_embeddings.weight"],
                       c["model.embeddings.word_embeddings.weight"])
    # the BERT pooler is kept for the checkpoint layout but frozen
    assert not q["model.pooler.dense.weight"].requires_grad


def test_dropout_flag_overrides_config(tiny_bert: Path) -> None:
    model = build_biencoder("hf_bert", str(tiny_bert), dropout=0.3)
    assert model.question_model.model.config.hidden_dropout_prob == 0.3
    assert model.question_model.model.config.attention_probs_dropout_prob == 0.3


def test_fix_ctx_encoder_gives_no_ctx_gradients(tiny_camembert: Path) -> None:
    model = build_biencoder("hf_roberta", str(tiny_camembert), fix_ctx_encoder=True)
    ids = torch.tensor([[5, 40, 6], [5, 41, 6]])
    q, c = model(ids, ids != 1, ids, ids != 1)
    (q @ c.T).sum().backward()
    assert all(p.grad is None for p in model.ctx_model.parameters())
    assert any(p.grad is not None for p in model.question_model.parameters())


def test_usable_positions_of_bert_and_roberta_type_configs() -> None:
    # Given a 512-position BERT and 514-position RoBERTa-type configs
    from transformers import BertConfig, CamembertConfig, RobertaConfig, XLMRobertaConfig

    from dpr.models.factory import usable_positions

    # Then BERT can embed 512 tokens, RoBERTa-type models max_position_embeddings - 2
    assert usable_positions(BertConfig(max_position_embeddings=512)) == 512
    for cls in (RobertaConfig, CamembertConfig, XLMRobertaConfig):
        assert usable_positions(cls(max_position_embeddings=514, pad_token_id=1)) == 512


def test_bert_folder_without_pooler_loads_without_a_train_me_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Sentence-transformers folders hold no BERT pooler: loading one is an INFO line, not
    transformers' "You should probably TRAIN this model" warning; weights are the folder's."""
    import logging

    from transformers import BertConfig, BertModel

    from dpr.models.encoder import build_hf_encoder

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)
    saved = BertModel(config, add_pooling_layer=False)
    saved.save_pretrained(tmp_path)
    class Keep(logging.Handler):  # transformers' records, whether or not they propagate
        records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    keep, hf_root = Keep(level=logging.WARNING), logging.getLogger("transformers")
    hf_root.addHandler(keep)
    try:
        with caplog.at_level(logging.INFO):
            encoder = build_hf_encoder("hf_bert", str(tmp_path))
    finally:
        hf_root.removeHandler(keep)
    assert not keep.records
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("no BERT pooler weights" in r.getMessage() for r in caplog.records)
    loaded = dict(encoder.named_parameters())
    for name, value in saved.named_parameters():
        assert torch.equal(next(v for k, v in loaded.items() if k.endswith(name)), value)


def test_transformers_mistral_regex_false_alarm_is_dropped() -> None:
    """The filter sits on transformers' tokenizer logger itself (whatever handlers and
    propagation transformers configured): its false alarm is dropped, other records pass."""
    import logging

    import dpr.data.tensorizer  # noqa: F401  (installs the filter)

    hf_logger = logging.getLogger("transformers.tokenization_utils_base")

    def record(message: str) -> logging.LogRecord:
        return hf_logger.makeRecord(hf_logger.name, logging.WARNING, __file__, 0, message,
                                    None, None)

    alarm = record("The tokenizer you are loading from 'x' with an incorrect regex pattern ... "
                   "set the `fix_mistral_regex=True` flag")
    assert not hf_logger.filter(alarm)
    assert hf_logger.filter(record("another tokenizer warning"))
