"""napari-advseg: adversarial image synthesis to attack a segmentation CNN.

Implements Chen et al., "Intelligent image synthesis to attack a segmentation
CNN using adversarial learning" (MICCAI-W SASHIMI 2019). The core modules
(everything but ``widgets`` and the napari entry points) need only numpy,
torch and nibabel.
"""

__version__ = "0.1.0"
