"""The targets: the project's U-Net and its training, target files and loading (TorchScript, U-Net checkpoints)."""
