# Metrics of each variant and seed on each evaluation split, at the images' original size.


rule evaluate_variant:
    input:
        model="results/models/{variant}/seed-{seed}/model.pt",
        summary="results/models/{variant}/seed-{seed}/summary.json",  # training time, read beside model.pt
        manifest="results/masks/{split}/manifest.csv",
        packed=lambda wc: packed_inputs(wc.split),
    output:
        metrics="results/eval/{variant}/seed-{seed}/{split}/metrics.json",
        per_class=report(
            "results/eval/{variant}/seed-{seed}/{split}/per_class.csv",
            caption="../report/per_class.rst",
            category="Per variant",
            subcategory="{split}",
            labels={"variant": "{variant}", "seed": "{seed}", "table": "per class"},
        ),
        confusion="results/eval/{variant}/seed-{seed}/{split}/confusion.csv",
        per_image="results/eval/{variant}/seed-{seed}/{split}/per_image.npz",
        samples=report(
            directory("results/eval/{variant}/seed-{seed}/{split}/samples"),
            patterns=["{name}.png"],
            caption="../report/samples_variant.rst",
            category="Samples",
            subcategory="{split}",
            labels={"variant": "{variant}", "seed": "{seed}", "image": "{name}"},
        ),
    log:
        "results/logs/evaluate/{variant}/seed-{seed}/{split}.log",
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        gpu=lambda wc: job_gpus(wc.variant),
        runtime=config["evaluate"]["runtime_minutes"],
    params:
        split_dir=lambda wc, input: os.path.dirname(input.manifest),
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
        samples=config["evaluate"]["samples"],
        inference=inference_options,
        read=read_options(config["evaluate"]),
        gpu=lambda wc: gpu_flags(wc.variant),
    shell:
        "python -m cocoseg evaluate --model {input.model:q} --split-dir {params.split_dir:q}"
        " --output {params.out_dir:q} --samples {params.samples} {params.inference:q}"
        " --cpus {threads} {params.read:q}"
        " {params.gpu:q} > {log} 2>&1"


# Each run scored on the images that chose its epoch (the holdout, or train.selection's split),
# with evaluation's inference: the report picks the winner on these, so val's score stays unbiased.
# It runs after the run's evaluations, so a cluster group of training and both holds one GPU.
rule score_selection:
    input:
        model="results/models/{variant}/seed-{seed}/model.pt",
        summary="results/models/{variant}/seed-{seed}/summary.json",
        manifest=selection_manifest(),
        packed=packed_inputs(TRAIN_SPLIT if SELECTION == "holdout" else SELECTION),
        evaluated=evaluations_of_run,
    output:
        metrics="results/selection/{variant}/seed-{seed}/metrics.json",
    log:
        "results/logs/selection/{variant}/seed-{seed}.log",
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        gpu=lambda wc: job_gpus(wc.variant),
        runtime=config["evaluate"]["selection_runtime_minutes"],
    params:
        split_dir=lambda wc, input: os.path.dirname(input.manifest),
        subset="holdout" if SELECTION == "holdout" else "all",
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
        inference=mode_options,
        read=read_options(config["evaluate"]),
        gpu=lambda wc: gpu_flags(wc.variant),
    shell:
        "python -m cocoseg evaluate --model {input.model:q} --split-dir {params.split_dir:q}"
        " --subset {params.subset} --output {params.out_dir:q} --samples 0 {params.inference:q}"
        " --cpus {threads} {params.read:q} {params.gpu:q} > {log} 2>&1"
