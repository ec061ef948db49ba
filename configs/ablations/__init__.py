"""Ablations: each file imports a base config and overrides a few fields."""
