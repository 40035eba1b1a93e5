"""The label values of a mask, as every stage reads and writes them."""

BACKGROUND = 0  # where the split has a background class (masks.unlabeled: background)
IGNORE = 255  # pixels no metric counts: crowd regions, padding, unknown categories, unlabelled pixels
MAX_CLASSES = 254  # classes 1..254 after background, or 0..253; 255 is "ignore"


def has_background(labels: list[dict]) -> bool:
    """Whether label 0 of a label map (rows of a labels.csv) is background, the one row without
    a category; where the data set labels every pixel, label 0 is its first class."""
    return bool(labels) and str(labels[0]["category_id"]) == ""
