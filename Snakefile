# cocoseg: COCO annotations -> masks -> trained variants -> comparison report.
# Rules live in workflow/rules/ by stage; the logic lives in the `cocoseg` package.
# Cheap rules run on the submitting machine under a cluster executor (the JSON index too, unless
# masks.index_on_cluster).
from snakemake.utils import min_version

min_version("9.0")


localrules:
    all,
    demo_dataset,
    encoder_weights,
    gather_masks,
    gather_predictions,
    report,


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/predict.smk"


onstart:
    record_lock_owner(".snakemake")


rule all:
    input:
        final_targets(),
