"""What the attack runs on: intensity scaling, cases and slice splits, the phantom, the shipped sample."""
