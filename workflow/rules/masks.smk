# COCO JSON (instances-format files, or panoptic JSON and PNGs) -> masks, fanned out per split and shard:
# index (parse the JSON once) -> one job per shard -> gather (manifest, labels, summary).


rule index_split:
    input:
        annotations=annotation_files,
    output:
        temp(directory("results/masks/{split}/index")),
    log:
        "results/logs/masks/{split}/index.log",
    localrule: not config["masks"]["index_on_cluster"]
    conda:
        "../../envs/masks.yaml"
    resources:
        mem_mb=index_memory_mb,
    params:
        shards=lambda wc: split_config(wc)["shards"],
        options=mask_options,
    shell:
        "python -m cocoseg index --annotations {input.annotations:q} --output {output:q}"
        " --shards {params.shards} {params.options:q} > {log} 2>&1"


rule mask_shard:
    input:
        index="results/masks/{split}/index",
        images=lambda wc: split_config(wc)["images"],
        panoptic=panoptic_masks,
    output:
        temp(directory("results/masks/{split}/shards/{shard}")),
    log:
        "results/logs/masks/{split}/shard-{shard}.log",
    conda:
        "../../envs/masks.yaml"
    params:
        link=config["masks"]["link_images"],
        compress_level=config["masks"]["png_compress_level"],
        panoptic=panoptic_options,
    shell:
        "python -m cocoseg shard --index-file {input.index:q}/shard-{wildcards.shard}.pkl"
        " --images {input.images:q} --output {output:q} --link {params.link}"
        " --compress-level {params.compress_level} {params.panoptic:q}"
        " --name '{wildcards.split} ' > {log} 2>&1"


rule gather_masks:
    input:
        index="results/masks/{split}/index",
        shards=shard_dirs,
    output:
        manifest=report(
            "results/masks/{split}/manifest.csv",
            caption="../report/manifest.rst",
            category="Data",
            labels={"split": "{split}", "table": "manifest"},
        ),
        labels="results/masks/{split}/labels.csv",
        summary="results/masks/{split}/summary.json",
        masks=directory("results/masks/{split}/masks"),
        images=directory("results/masks/{split}/images"),
    log:
        "results/logs/masks/{split}/gather.log",
    conda:
        "../../envs/masks.yaml"
    params:
        out_dir=lambda wc, output: os.path.dirname(output.manifest),
        holdout=holdout_options,
    shell:
        "python -m cocoseg gather --meta {input.index:q}/meta.json --shard-dirs {input.shards:q}"
        " --output {params.out_dir:q} --name '{wildcards.split} ' {params.holdout:q} > {log} 2>&1"


rule pack_split:
    input:
        manifest="results/masks/{split}/manifest.csv",
        masks="results/masks/{split}/masks",
        images="results/masks/{split}/images",
    output:
        directory("results/masks/{split}/packed"),
    log:
        "results/logs/masks/{split}/pack.log",
    conda:
        "../../envs/masks.yaml"
    params:
        split_dir=lambda wc, input: os.path.dirname(input.manifest),
        part_mb=config["masks"]["pack_part_mb"],
    shell:
        "python -m cocoseg pack --split-dir {params.split_dir:q} --part-mb {params.part_mb} > {log} 2>&1"
