rule demo_dataset:
    output:
        annotations=expand("results/demo/annotations/{split}.json", split=config["demo"]["splits"]),
        images=[directory(f"results/demo/images/{split}") for split in config["demo"]["splits"]],
    log:
        "results/logs/demo_dataset.log",
    conda:
        "../../envs/masks.yaml"
    params:
        root=lambda wc, output: os.path.dirname(os.path.dirname(output.annotations[0])),
        splits=demo_split_options(),
        seed=config["demo"]["seed"],
    shell:
        "python -m cocoseg demo --output {params.root:q} --seed {params.seed}"
        " {params.splits:q} > {log} 2>&1"
