"""Evaluation: metrics, the support-draw protocol, baselines, reports."""
