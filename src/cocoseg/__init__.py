"""cocoseg: COCO instance annotations to a comparison of semantic-segmentation models."""

__version__ = "0.1.0"
