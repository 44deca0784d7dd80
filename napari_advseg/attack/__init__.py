"""The attack: configuration, fields, losses, training, exploring, whole-volume sampling, baselines."""
