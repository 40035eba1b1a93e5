"""What every stage shares: errors, label values, safe file writing, image checks and decoding,
the hardware a job runs on, worker processes, progress lines, colours, and the confusion-matrix
metrics that both validation and evaluation count.

May import nothing else from cocoseg.
"""
