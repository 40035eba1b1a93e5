"""Handing a model over for use (workflow/rules/predict.smk, export.smk): masks for a folder of
new images and exported ONNX or TorchScript files checked against PyTorch.

May import `cocoseg.shared`, `cocoseg.masks`, `cocoseg.training` and `cocoseg.evaluation`.
"""
