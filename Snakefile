# cocoseg: COCO annotations -> masks -> trained variants -> comparison report.
# Rules live in workflow/rules/ by stage; the logic lives in the `cocoseg` package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        final_targets(),
