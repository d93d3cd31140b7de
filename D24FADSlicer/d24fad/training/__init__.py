"""Episodic meta-training (single process and torchrun DDP)."""
