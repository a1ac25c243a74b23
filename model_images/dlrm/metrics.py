"""ROC AUC, the DLRM workload's quality metric, from the rank statistic (Mann-Whitney U). AUC is
no sum over samples: train.py gathers every rank's scores first (wl.gather_over_ranks)."""

import torch


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The probability that a random positive scores above a random negative (ties count 1/2).

    Equal to sklearn.metrics.roc_auc_score; computed as (R+ - P(P+1)/2) / (P N), where R+ sums
    the positives' ranks among all scores and tied scores share their mean rank.
    """
    scores, positive = scores.flatten().double(), labels.flatten().bool()
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    _, group, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    mean_rank = counts.cumsum(0) - (counts - 1) / 2  # 1-based ranks; a tie gets their mean
    rank_sum = mean_rank[group][positive].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
