# The report's winner (results/report/best.json) exported for other runtimes, checked against
# PyTorch; export.json names its variant and seed.


rule export_best:
    input:
        unpack(lambda wc: chosen_run_inputs(BEST, BEST)),
        manifest=f"results/masks/{EVAL_SPLITS[0]}/manifest.csv",
    output:
        directory("results/export/best/{format}"),
    log:
        "results/logs/export/{format}.log",
    wildcard_constraints:
        format="onnx|torchscript",
    conda:
        "../../envs/export.yaml"
    threads: 2
    params:
        model=chosen_run_options(BEST, BEST),
        split_dir=lambda wc, input: os.path.dirname(input.manifest),
    shell:
        "python -m cocoseg export {params.model:q} --format {wildcards.format} --output {output:q}"
        " --check-split {params.split_dir:q} > {log} 2>&1"
