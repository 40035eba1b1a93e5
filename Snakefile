# The workflow is workflow/Snakefile (the Snakemake workflow catalogue's layout, and what another
# workflow's `module` points at); `snakemake` from here runs it.


include: "workflow/Snakefile"


localrules:
    run_workflow,


rule run_workflow:  # the default target (rules of an included file never are)
    default_target: True
    input:
        rules.all.input,
