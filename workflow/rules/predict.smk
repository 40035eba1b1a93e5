# New images predicted with the report's winner or a named run (config predict): one job per
# shard of each folder, then one folder per name under results/predict/.


rule predict_shard:
    input:
        unpack(lambda wc: chosen_run_inputs(PREDICT["variant"], PREDICT["seed"])),
        images=lambda wc: PREDICT["folders"][wc.folder],
    output:
        temp(directory("results/predict_shards/{folder}/{shard}")),
    log:
        "results/logs/predict/{folder}/shard-{shard}.log",
    wildcard_constraints:
        folder=PREDICT_FOLDERS,
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        gpu=job_gpus(PREDICT["variant"]),
    params:
        model=lambda wc, input: chosen_run_flags(PREDICT["variant"], PREDICT["seed"], input),
        shards=PREDICT["shards"],
        overlays=[] if PREDICT["overlays"] else ["--no-overlays"],
        inference=inference_options,
        gpu=gpu_flags(PREDICT["variant"]),
    shell:
        "python -m cocoseg predict {params.model:q} --images {input.images:q} --output {output:q}"
        " --shard {wildcards.shard} --shards {params.shards} {params.overlays:q} {params.inference:q}"
        " --cpus {threads}"
        " {params.gpu:q} > {log} 2>&1"


rule gather_predictions:
    input:
        prediction_shards,
    output:
        directory("results/predict/{folder}"),
    log:
        "results/logs/predict/{folder}/gather.log",
    wildcard_constraints:
        folder=PREDICT_FOLDERS,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m cocoseg gather-predictions --shard-dirs {input:q} --output {output:q} > {log} 2>&1"
