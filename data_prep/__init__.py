"""SQuAD-format QA files to DPR training and evaluation files."""
