"""The label values of a mask, as every stage reads and writes them."""

BACKGROUND = 0
IGNORE = 255  # pixels no metric counts: crowd regions, padding, unknown categories
MAX_CLASSES = 254  # labels 1..254; 0 is background and 255 is "ignore"
