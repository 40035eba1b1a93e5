"""The mask stage (workflow/rules/masks.smk, demo.smk): COCO files read as streams and merged by
id, the label map (background or ignore for unlabelled pixels), annotations or panoptic PNGs
painted into label masks, masks written as PNG, the split folder format later stages read, and
the synthetic demo data set (with stuff regions on request).

May import `cocoseg.shared` only; torch-free, so the mask jobs run in the light environment.
"""
