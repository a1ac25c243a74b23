"""DeepSpark collector: verifies signed results and compares platforms (see issue: collector)."""
