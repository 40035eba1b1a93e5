"""The training stage (workflow/rules/train.smk, weights.smk): the variant a job trains, the
scale images are seen at, the data pipeline and its augmentation, the network, losses, the
Lightning module, stopping for a scheduler, and model.pt, the file a finished run hands on.

May import `cocoseg.shared` and `cocoseg.masks` (the split folders it reads).
"""
