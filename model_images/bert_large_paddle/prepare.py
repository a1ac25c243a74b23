"""MLPerf BERT's Wikipedia text -> the full config's vocab.txt, train/*.npy and eval.npy: the
library's converter (deepspark_workload/mlm_text.py), which both BERT workloads share."""

from deepspark_workload.mlm_text import convert

__all__ = ["convert"]
