"""Dice per organ, success, and the Table-1 report (one counting loop for generator and baselines)."""
