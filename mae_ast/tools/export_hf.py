"""mae-ast-export-hf CHECKPOINT OUT_DIR: a folder transformers loads with
``trust_remote_code=True`` (and ``mae_ast.load`` / ``load_classifier`` load back).

    from transformers import AutoFeatureExtractor, AutoModel
    fe = AutoFeatureExtractor.from_pretrained(OUT_DIR, trust_remote_code=True)
    model = AutoModel.from_pretrained(OUT_DIR, trust_remote_code=True)
    out = model(**fe([wav], sampling_rate=16000, return_tensors="pt"), output_hidden_states=True)

Writes config.json (with ``auto_map``), preprocessor_config.json, model.safetensors and
the remote-code files generated from the package's own modules (mae_ast/hf/remote_code.py).
A pretraining checkpoint (ours or a released one) exports its encoder (``AutoModel``;
the decoder and pretraining heads are left out); a fine-tuned classifier exports
``AutoModelForAudioClassification`` with its class names as ``id2label``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from ..checkpoints import CLASSIFIER, CheckpointError, checkpoint_kind, read_checkpoint
from ..classifier import classifier_from_state
from ..hf import remote_code
from ..hf.folder import CLASSIFIER_PREFIX, CONFIG, ENCODER_PREFIX, WEIGHTS
from ..inference import build_from_state
from ..models.builders import ENCODER_FIELDS, features_of, strip_pretraining

AUTO_MAP = {
    "AutoConfig": "configuration_mae_ast.MAEASTConfig",
    "AutoModel": "modeling_mae_ast.MAEASTModel",
    "AutoModelForAudioClassification": "modeling_mae_ast.MAEASTForAudioClassification",
    "AutoFeatureExtractor": "feature_extraction_mae_ast.MAEASTFeatureExtractor",
}
PREPROCESSOR = "preprocessor_config.json"


def _encoder_fields(cfg) -> dict:
    fields = cfg if isinstance(cfg, dict) else dataclasses.asdict(cfg)
    # torch.compile is a training-speed switch, not part of the architecture.
    return {**{k: v for k, v in fields.items() if k in ENCODER_FIELDS}, "compile_blocks": False}


def export(checkpoint: str, out_dir: str) -> dict:
    """Export ``checkpoint`` into ``out_dir`` (created); returns config.json's content."""
    from safetensors.torch import save_file

    from .. import __version__

    state = read_checkpoint(checkpoint)  # CheckpointError names a bad file
    if checkpoint_kind(state) == CLASSIFIER:
        model, clf = None, classifier_from_state(state)
    else:
        model, clf = build_from_state(state).eval(), None
    if clf is None:
        encoder, spec, grid = _encoder_fields(model.cfg), model.feature_spec, model.grid
        weights = {ENCODER_PREFIX + k: v for k, v in strip_pretraining(model).state_dict().items()}
        config = {"architectures": ["MAEASTModel"]}
    else:
        net = clf.model
        encoder, spec, grid = _encoder_fields(net.encoder_cfg), clf.feature_spec, net.backbone.grid
        weights = {CLASSIFIER_PREFIX + k: v for k, v in net.state_dict().items()}
        config = {"architectures": ["MAEASTForAudioClassification"],
                  "id2label": {str(i): name for i, name in enumerate(clf.class_names)},
                  "label2id": {name: i for i, name in enumerate(clf.class_names)},
                  "multi_label": clf.multi_label, "target_length": clf.target_length,
                  "head_dropout": float(net.cfg.head_dropout), "head_norm": net.head_norm,
                  "problem_type": "multi_label_classification" if clf.multi_label else "single_label_classification"}
    config = {"model_type": "mae_ast", "auto_map": AUTO_MAP, **config, "encoder": encoder,
              "features": features_of(spec), "time_aligned": True, "dtype": "float32",
              "mae_ast_version": __version__}
    preprocessor = {
        "feature_extractor_type": "MAEASTFeatureExtractor",
        "auto_map": {"AutoFeatureExtractor": AUTO_MAP["AutoFeatureExtractor"]},
        "sampling_rate": spec.sample_rate, "num_mel_bins": spec.num_mel_bins, "deltas": spec.deltas,
        "feature_size": spec.width, "min_frames": grid.min_frames,
        "target_length": config.get("target_length"), "padding_value": 0.0, "padding_side": "right",
        "return_attention_mask": True,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remote_code.write(out)
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    (out / PREPROCESSOR).write_text(json.dumps(preprocessor, indent=2) + "\n")
    save_file({k: v.detach().to("cpu").contiguous() for k, v in weights.items()}, str(out / WEIGHTS),
              metadata={"format": "pt"})
    (out / WEIGHTS).chmod(0o644)  # safetensors writes 0600; the folder is meant to be shared
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mae-ast-export-hf", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint",
                        help="MAE-AST checkpoint: pretraining (ours or released) or fine-tuned classifier")
    parser.add_argument("out_dir", help="folder to write (created; existing exported files are replaced)")
    args = parser.parse_args(argv)
    if os.path.isfile(args.out_dir):
        parser.error(f"{args.out_dir} is a file, not a folder")
    try:
        config = export(args.checkpoint, args.out_dir)
    except (CheckpointError, remote_code.ExportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    kind = config["architectures"][0]
    extra = f", {len(config['id2label'])} classes" if "id2label" in config else ""
    print(f"{args.out_dir}: {kind} ({config['encoder'].get('encoder_layers')} layers, "
          f"{config['features']['feature_dim']} mel bins{extra}); load with "
          f"AutoModel{'ForAudioClassification' if extra else ''}.from_pretrained(..., trust_remote_code=True)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
