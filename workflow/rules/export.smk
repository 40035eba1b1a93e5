# The report's winner (results/report/best.json) exported for other runtimes, checked against PyTorch.


rule export_best:
    input:
        best="results/report/best.json",
        models=run_outputs("results/models/{variant}/seed-{seed}/model.pt"),
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
        split_dir=lambda wc, input: os.path.dirname(input.manifest),
    shell:
        "python -m cocoseg export --best {input.best:q} --format {wildcards.format} --output {output:q}"
        " --check-split {params.split_dir:q} > {log} 2>&1"
