"""The mask stage (workflow/rules/masks.smk, demo.smk): COCO files read as streams, annotations
painted into label masks, masks written as PNG, the split folder format later stages read, and
the synthetic demo data set.

May import `cocoseg.shared` only; torch-free, so the mask jobs run in the light environment.
"""
