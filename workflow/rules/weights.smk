# Encoder weights, fetched (a name such as imagenet) or checked (a file) once per encoder on the
# submitting machine, so training jobs on offline compute nodes load a local file. Only run
# when model.encoder_weights is set. Only the encoder is built, whatever the architectures.


rule encoder_weights:
    input:
        weights_source,
    output:
        "results/weights/{encoder}.pt",
    log:
        "results/logs/weights/{encoder}.log",
    conda:
        "../../envs/train.yaml"
    params:
        weights=config["model"]["encoder_weights"],
    shell:
        "python -m cocoseg weights --encoder {wildcards.encoder:q}"
        " --weights {params.weights:q} --output {output:q} > {log} 2>&1"
