"""What the report shows: its plots by name, and how many images it names and draws.

The plots are results/report/plots/<name>.png, captioned by workflow/report/<name>.rst.

The workflow declares these files and the report draws them; kept free of heavy imports so the
Snakefile can read it.
"""

PLOTS = (
    "metrics_bars",  # mIoU, mDice and pixel accuracy per variant (mean, error bars: std over seeds)
    "speed_accuracy",  # inference speed against mIoU, Pareto front marked
    "cost_accuracy",  # training cost in device-hours against mIoU
    "main_effects",  # mean mIoU of each value of each setting that varies
    "interactions",  # mean mIoU of each pair of values of two settings tried in every combination
    "per_class_iou",  # IoU per class and variant
    "training_curves",  # training loss and selection mIoU per epoch
    "class_frequency",  # share of labelled pixels per class and split
    "confusion_best",  # normalised confusion matrix of the best variant
    "samples",  # image, ground truth and prediction for sample images
)

# Drawn after the report by the `top_two_differ` rule (`cocoseg top-two`, which needs the models),
# and linked from REPORT.md.
TOP_TWO_PLOT = "top_two_differ.png"

SHOWN_IMAGES = 5  # images in the hardest-images table and in the top-two pictures
