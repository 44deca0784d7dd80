"""Files in and out: NIfTI volumes with their geometry and orientation, atomic writes, checkpoints."""
