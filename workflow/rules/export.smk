# A run exported for other runtimes, checked against PyTorch: results/export/best/<format>/ for the
# report's winner (results/report/best.json; `rule all` asks for it), results/export/<variant>/<format>/
# for any variant (its seed with the highest selection mIoU). export.json names variant and seed.
# Export asks for no GPU (`job_gpus`): tracing and the onnxruntime check run on the CPU.


rule export_model:
    input:
        unpack(lambda wc: chosen_run_inputs(wc.exported, BEST)),
        manifest=f"results/masks/{EVAL_SPLITS[0]}/manifest.csv",
    output:
        directory("results/export/{exported}/{format}"),
    log:
        "results/logs/export/{exported}/{format}.log",
    wildcard_constraints:
        format="onnx|torchscript",
    conda:
        "../../envs/export.yaml"
    threads: 2
    params:
        model=lambda wc, input: chosen_run_flags(wc.exported, BEST, input),
        split_dir=lambda wc, input: os.path.dirname(input.manifest),
    shell:
        "python -m cocoseg export {params.model:q} --format {wildcards.format} --output {output:q}"
        " --check-split {params.split_dir:q} > {log} 2>&1"
