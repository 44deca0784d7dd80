"""Files in and out: NIfTI volumes and DICOM CT series with their geometry and orientation, atomic writes, checkpoints."""
