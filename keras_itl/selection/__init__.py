"""Which target training instances to drop before fine-tuning: rankers, policies, caps and floors, auto.

A ranker (one module each in ``keras_itl.selection.rankers``, registered by name) orders the
instances; a policy walks that order through the caps and per-class floors; ``auto`` judges
candidate drop sets by refits on validation data that did not rank them.
"""
from keras_itl.selection.auto import Candidate
from keras_itl.selection.drops import Fold, SelectionResult, select_drops
from keras_itl.selection.policy import Policy, parse_policy, policy_forms, policy_help, policy_texts
from keras_itl.selection.ranker import Ranker, Ranking, RankingInputs, all_rankers, ranker_for, register

__all__ = [
    "all_rankers",
    "Candidate",
    "Fold",
    "Policy",
    "Ranker",
    "Ranking",
    "RankingInputs",
    "SelectionResult",
    "parse_policy",
    "policy_forms",
    "policy_help",
    "policy_texts",
    "ranker_for",
    "register",
    "select_drops",
]
