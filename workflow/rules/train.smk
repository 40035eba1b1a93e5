# One training job per variant and seed. Checkpoints live in results/checkpoints/, which is not a
# declared output: Snakemake would delete it before a rerun, and a killed job must resume.
# `cocoseg train` resumes only a run with the same settings and data (its fingerprint). `exec`:
# SLURM's warning signal (the profile's --signal) reaches training itself, which saves and exits,
# not a shell that would die of it first.


rule train_variant:
    input:
        train=split_manifest(TRAIN_SPLIT),
        selection=selection_inputs(),
        packed=packed_inputs(TRAIN_SPLIT, *([] if SELECTION == "holdout" else [SELECTION])),
        weights=train_weights,
    output:
        model="results/models/{variant}/seed-{seed}/model.pt",
        summary="results/models/{variant}/seed-{seed}/summary.json",
    log:
        "results/logs/train/{variant}/seed-{seed}.log",
    conda:
        "../../envs/train.yaml"
    threads: training_cpus
    resources:
        gpu=training_gpus,
        mem_mb=training_mem_mb,
        runtime=TRAINING_MINUTES,
    params:
        options=train_options,
        selection=selection_options,
        weights=weights_options,
        train_dir=lambda wc, input: os.path.dirname(input.train),
        out_dir=lambda wc, output: os.path.dirname(output.model),
        checkpoints="results/checkpoints/{variant}/seed-{seed}",
        logs="results/train_logs/{variant}/seed-{seed}",
    shell:
        "HF_HUB_OFFLINE=1 exec python -m cocoseg train --train-dir {params.train_dir:q} {params.selection:q}"
        " {params.weights:q}"
        " --output {params.out_dir:q} --checkpoint-dir {params.checkpoints:q}"
        " --log-dir {params.logs:q} --cpus {threads} --mem-mb {resources.mem_mb}"
        " {params.options:q} > {log} 2>&1"
