rule demo_dataset:
    output:
        annotations=DEMO_ANNOTATIONS,
        images=[directory(f"results/demo/images/{split}") for split in config["demo"]["splits"]],
    log:
        "results/logs/demo_dataset.log",
    conda:
        "../../envs/masks.yaml"
    params:
        root=lambda wc, output: os.path.dirname(os.path.dirname(output.annotations[0])),
        splits=demo_split_options(),
        seed=config["demo"]["seed"],
        stuff="--stuff" if config["demo"]["stuff"] else "",
    shell:
        "python -m cocoseg demo --output {params.root:q} --seed {params.seed}"
        " {params.splits:q} {params.stuff} > {log} 2>&1"
