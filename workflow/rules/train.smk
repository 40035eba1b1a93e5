# One training job per variant. Checkpoints live in results/checkpoints/<variant>/, which is
# not a declared output: Snakemake would delete it before a rerun, and a rerun must resume.


rule train_variant:
    input:
        train=split_manifest(config["train"]["train_split"]),
        val=split_manifest(config["train"]["val_split"]),
    output:
        model="results/models/{variant}/model.pt",
        summary="results/models/{variant}/summary.json",
    params:
        options=train_options,
        train_dir=lambda wc, input: os.path.dirname(input.train),
        val_dir=lambda wc, input: os.path.dirname(input.val),
        out_dir=lambda wc, output: os.path.dirname(output.model),
        checkpoints=lambda wc, output: os.path.join(
            "results", "checkpoints", os.path.basename(os.path.dirname(output.model))
        ),
        logs=lambda wc, output: os.path.join(
            "results", "train_logs", os.path.basename(os.path.dirname(output.model))
        ),
    threads: 4
    resources:
        gpu=variant_gpus,
    log:
        "results/logs/train/{variant}.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m cocoseg train --train-dir {params.train_dir:q} --val-dir {params.val_dir:q}"
        " --output {params.out_dir:q} --checkpoint-dir {params.checkpoints:q}"
        " --log-dir {params.logs:q} --workers {threads} {params.options:q} > {log} 2>&1"
