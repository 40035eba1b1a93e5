# The final rule: comparison tables and plots under results/report/, and the top-level REPORT.md.


rule report:
    input:
        summaries=run_outputs("results/models/{variant}/seed-{seed}/summary.json"),
        selection=run_outputs("results/selection/{variant}/seed-{seed}/metrics.json"),
        metrics=run_outputs(
            "results/eval/{variant}/seed-{seed}/{split}/metrics.json",
            split=EVAL_SPLITS,
        ),
        per_class=run_outputs(
            "results/eval/{variant}/seed-{seed}/{split}/per_class.csv",
            split=EVAL_SPLITS,
        ),
        confusion=run_outputs(
            "results/eval/{variant}/seed-{seed}/{split}/confusion.csv",
            split=EVAL_SPLITS,
        ),
        per_image=run_outputs(
            "results/eval/{variant}/seed-{seed}/{split}/per_image.npz",
            split=EVAL_SPLITS,
        ),
        samples=run_outputs("results/eval/{variant}/seed-{seed}/{split}/samples", split=EVAL_SPLITS),
        manifests=expand("results/masks/{split}/manifest.csv", split=SPLITS),
        template=os.path.relpath(WORKFLOW_DIR / "report" / "REPORT.md.jinja"),
    output:
        metrics=report(
            "results/report/metrics.csv",
            caption="../report/metrics.rst",
            category="Comparison",
            labels={"table": "metrics per variant and split"},
        ),
        per_seed="results/report/metrics_per_seed.csv",
        effects=report(
            "results/report/main_effects.csv",
            caption="../report/main_effects.rst",
            category="Comparison",
            labels={"table": "what each setting contributes"},
        ),
        interactions=report(
            "results/report/interactions.csv",
            caption="../report/interactions.rst",
            category="Comparison",
            labels={"table": "settings tried in every combination"},
        ),
        hardest=report(
            "results/report/hardest_images.csv",
            caption="../report/hardest_images.rst",
            category="Comparison",
            labels={"table": "each variant's hardest images"},
        ),
        disagreements="results/report/top_two_disagreements.csv",
        best="results/report/best.json",
        tables_md="results/report/metrics.md",
        per_class=report(
            "results/report/per_class_iou.csv",
            caption="../report/per_class_iou_table.rst",
            category="Comparison",
            labels={"table": "IoU per class"},
        ),
        datasets=report(
            "results/report/dataset_stats.csv",
            caption="../report/dataset_stats.rst",
            category="Data",
            labels={"table": "dataset statistics"},
        ),
        class_share="results/report/class_pixel_share.csv",
        per_class_per_seed="results/report/per_class_iou_per_seed.csv",
        confusions=report(
            "results/report/top_confusions.csv",
            caption="../report/top_confusions.rst",
            category="Comparison",
            labels={"table": "most confused class pairs"},
        ),
        plots=[
            report(
                f"results/report/plots/{name}.png",
                caption=f"../report/{name}.rst",
                category="Plots",
                labels={"plot": name.replace("_", " ")},
            )
            for name in PLOTS
        ],
        report_md="REPORT.md",
    log:
        "results/logs/report.log",
    conda:
        "../../envs/report.yaml"
    params:
        results=results_root,
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
        variants=list(VARIANTS),
        seeds=SEEDS,
        eval_splits=EVAL_SPLITS,
        data_splits=SPLITS,
        configs=CONFIG_FILES,
        resamples=config["report"]["bootstrap_resamples"],
        bootstrap_seed=config["report"]["bootstrap_seed"],
    shell:
        "python -m cocoseg report --results {params.results:q} --variants {params.variants:q}"
        " --seeds {params.seeds:q}"
        " --eval-splits {params.eval_splits:q} --data-splits {params.data_splits:q}"
        " --output-dir {params.out_dir:q} --report-md {output.report_md:q}"
        " --template {input.template:q} --configs {params.configs:q}"
        " --bootstrap-resamples {params.resamples} --bootstrap-seed {params.bootstrap_seed} > {log} 2>&1"


rule top_two_differ:
    input:
        metrics="results/report/metrics.csv",
        models=run_outputs("results/models/{variant}/seed-{seed}/model.pt"),
        per_image=run_outputs(
            "results/eval/{variant}/seed-{seed}/{split}/per_image.npz",
            split=EVAL_SPLITS,
        ),
        manifests=expand("results/masks/{split}/manifest.csv", split=EVAL_SPLITS),
    output:
        report(
            f"results/report/plots/{TOP_TWO_PLOT}",
            caption="../report/top_two_differ.rst",
            category="Plots",
            labels={"plot": "where the best two differ"},
        ),
    log:
        "results/logs/top_two_differ.log",
    conda:
        "../../envs/train.yaml"
    threads: 2
    params:
        results=results_root,
        masks=lambda wc, input: os.path.dirname(os.path.dirname(input.manifests[0])),
        seeds=SEEDS,
    shell:
        "python -m cocoseg top-two --results {params.results:q} --metrics {input.metrics:q}"
        " --masks {params.masks:q} --seeds {params.seeds:q} --output {output:q} --cpus {threads} > {log} 2>&1"
