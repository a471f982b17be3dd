"""Run inside a Python that has fairseq: loads a fairseq folder with fairseq itself and writes
its first-token features and its own token ids for the given sentences.

Usage: python fairseq_parity_script.py FOLDER INPUT.json OUTPUT.pt
INPUT.json: {"sentences": [...], "ids": [[...], ...]} (ids from the project's tokenizer)
"""

import json
import sys

import torch
from fairseq.models.roberta import RobertaModel


def main() -> None:
    folder, inp, out = sys.argv[1:4]
    data = json.load(open(inp, encoding="utf-8"))
    roberta = RobertaModel.from_pretrained(folder, checkpoint_file="model.pt",
                                           bpe="sentencepiece",
                                           sentencepiece_model=f"{folder}/sentencepiece.bpe.model")
    roberta.eval()
    features, fairseq_ids = [], []
    with torch.no_grad():
        for ids in data["ids"]:
            feats = roberta.extract_features(torch.tensor([ids]))
            features.append(feats[0, 0])
        for sentence in data["sentences"]:
            fairseq_ids.append(roberta.encode(sentence).tolist())
    torch.save({"features": torch.stack(features), "fairseq_ids": fairseq_ids}, out)


if __name__ == "__main__":
    main()
