"""mae-ast-export-hf CHECKPOINT OUT_DIR [--eval RESULT.json ...]: a folder transformers
loads with ``trust_remote_code=True`` (and ``mae_ast.load`` / ``load_classifier`` load back).

A pretraining checkpoint exports its encoder (``AutoModel``), a fine-tuned classifier
``AutoModelForAudioClassification``; beside the configs and weights go the remote code
(``mae_ast/hf/remote_code.py``) and a model card. Usage: README, "HEAR and Hugging Face".
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..checkpoints import CLASSIFIER, PRETRAINING, CheckpointError, config_section
from ..classifier import Classifier
from ..hf import remote_code
from ..hf.folder import CONFIG, EXPORTED_FIELDS, WEIGHTS, is_exported, to_folder
from .. import provenance
from ..loading import open_checkpoint
from ..models.builders import strip_pretraining
from ..models.class_scores import resolve_loss
from ._common import check_output, tool_parser

AUTO_MAP = {
    "AutoConfig": "configuration_mae_ast.MAEASTConfig",
    "AutoModel": "modeling_mae_ast.MAEASTModel",
    "AutoModelForAudioClassification": "modeling_mae_ast.MAEASTForAudioClassification",
    "AutoFeatureExtractor": "feature_extraction_mae_ast.MAEASTFeatureExtractor",
}
PREPROCESSOR = "preprocessor_config.json"
CARD = "README.md"


def export(checkpoint: str, out_dir: str, evaluations: list[str] | None = None) -> dict:
    """Export ``checkpoint`` into ``out_dir``; returns config.json's content. ``evaluations``:
    ``mae-ast-evaluate --json`` files whose numbers go into the card."""
    from safetensors.torch import save_file

    from .. import __version__

    if is_exported(checkpoint):  # its config.json holds less than the .pt (training settings, provenance)
        raise CheckpointError(f"{checkpoint}: already an exported folder; pass the .pt it was exported from")
    ck = open_checkpoint(checkpoint, kinds=(PRETRAINING, CLASSIFIER))  # CheckpointError names a bad file
    results = [read_evaluation(p, checkpoint) for p in evaluations or []]
    if ck.kind == CLASSIFIER:
        clf = Classifier(ck)
        net, backbone, spec = clf.model, clf.model.backbone, clf.feature_spec
        weights = to_folder(net.state_dict(), classifier=True)
        config = {"architectures": ["MAEASTForAudioClassification"],
                  "id2label": {str(i): name for i, name in enumerate(clf.class_names)},
                  "label2id": {name: i for i, name in enumerate(clf.class_names)},
                  "multi_label": clf.multi_label, "target_length": clf.target_length,
                  "head_dropout": float(net.cfg.head_dropout), "head_norm": net.head_norm,
                  "loss": resolve_loss(config_section(ck.state, "criterion").get("loss"), clf.multi_label),
                  "problem_type": "multi_label_classification" if clf.multi_label else "single_label_classification"}
    else:
        backbone = strip_pretraining(ck.model)
        spec = backbone.feature_spec
        weights = to_folder(backbone.state_dict(), classifier=False)
        config = {"architectures": ["MAEASTModel"]}
    fields = dataclasses.asdict(backbone.cfg)
    config = {"model_type": "mae_ast", "auto_map": AUTO_MAP, **config, **{k: fields[k] for k in EXPORTED_FIELDS},
              "sampling_rate": spec.sample_rate, "num_mel_bins": spec.num_mel_bins, "deltas": spec.deltas,
              "time_aligned": True, "dtype": "float32", "mae_ast_version": __version__}
    # Padding reads as silence: the raw value the encoder's BatchNorm maps to 0 (as HEAR pads).
    input_mean = float(backbone.batch_norm.running_mean.item())
    preprocessor = {
        "feature_extractor_type": "MAEASTFeatureExtractor",
        "auto_map": {"AutoFeatureExtractor": AUTO_MAP["AutoFeatureExtractor"]},
        "sampling_rate": spec.sample_rate, "num_mel_bins": spec.num_mel_bins, "deltas": spec.deltas,
        "feature_size": spec.width, "min_frames": backbone.grid.min_frames,
        "target_length": config.get("target_length"), "padding_value": input_mean, "padding_side": "right",
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
    n_params = sum(v.numel() for k, v in weights.items() if v.is_floating_point() and "running_" not in k)
    (out / CARD).write_text(model_card(config, preprocessor, training_record(ck.state), results, n_params))
    return config


# ---- the model card -----------------------------------------------------------------------

def training_record(state: dict) -> dict:
    """What the checkpoint says it was trained on, for the model card."""
    task, summary = config_section(state, "task"), provenance.describe(state)
    iterator = (state.get("extra_state") or {}).get("train_iterator") or {}
    updates = summary["updates"] if summary["updates"] is not None else iterator.get("iterations_in_epoch")
    model, dataset = config_section(state, "model"), config_section(state, "dataset")
    splits = [dataset.get(k) for k in ("train_subset", "valid_subset") if dataset.get(k)]
    return {"data": task.get("data"), "task": task.get("_name"), "updates": updates,
            "manifests": [f"{s}.tsv" for s in splits] or None, "epoch": iterator.get("epoch"),
            "pretrained_checkpoint": model.get("pretrained_checkpoint"),
            "provenance": summary}


def provenance_lines(summary: dict) -> list[str]:
    """The card's lines for ``provenance.describe``'s summary."""
    if summary.get("status") != "recorded":
        return ["", f"No provenance record: {summary.get('reason', 'none stored')}."]

    def splits(rec: dict) -> list[str]:
        return [f"- {rec.get('kind') or 'run'} split `{name}`: {s.get('n_clips')} clips from `{s.get('manifest')}`"
                f" (manifest fingerprint {s.get('manifest_key')})" for name, s in (rec.get("splits") or {}).items()]

    lines = ["", "Recorded provenance (the clips each split held, by real path and content, are in the "
             "checkpoint's record; `mae-ast-evaluate` checks scored clips against it):", ""] + splits(summary)
    pre = summary.get("pretraining")
    if pre:
        lines += splits(pre) if pre.get("splits") else [f"- pretraining: {pre.get('status', 'unknown')} "
                                                        f"({pre.get('reason') or pre.get('checkpoint') or ''})"]
    return lines


# What every mae-ast-evaluate --json file holds besides its metrics.
EVALUATION_KEYS = ("split", "crop", "checkpoint_hash", "overlap_with_training", "selected_on_scored_clips")


def read_evaluation(path: str, checkpoint: str) -> dict:
    """A ``mae-ast-evaluate --json`` file of ``checkpoint`` itself (by its hash): the card must
    not publish another model's number, nor a number without its split."""
    try:
        with open(path) as f:
            result = {"file": os.path.basename(path), **json.load(f)}
    except (OSError, json.JSONDecodeError, TypeError) as err:
        raise CheckpointError(f"{path}: not a mae-ast-evaluate --json file ({err})") from err
    missing = [k for k in EVALUATION_KEYS if k not in result]
    if missing:
        raise CheckpointError(f"{path}: not a mae-ast-evaluate --json file (no {', '.join(missing)}); pass the "
                              "files mae-ast-evaluate CHECKPOINT DATA --json writes")
    ours = provenance.checkpoint_hash(checkpoint)
    if result["checkpoint_hash"] != ours:
        raise CheckpointError(f"{path}: scores checkpoint {result.get('checkpoint')} (hash "
                              f"{result['checkpoint_hash']}), not {checkpoint} (hash {ours}): evaluate the "
                              f"checkpoint you export (mae-ast-evaluate {checkpoint} DATA --json ...) and pass that "
                              "file")
    return result


def _numbers(result: dict) -> list[tuple[str, Any]]:
    """The scalar metrics and counts of an evaluation file."""
    return [(k, v) for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in EVALUATION_KEYS]


def evaluation_line(result: dict) -> str:
    """One card line: the file, what it scored, its numbers, and what a reader must know of them."""
    cautions = []
    if result["overlap_with_training"]:
        cautions.append(f"{result['overlap_with_training']} of these clips were in the checkpoint's training "
                        "data: not a held-out score")
    if result["selected_on_scored_clips"]:
        cautions.append("the checkpoint was selected on these clips (its validation split): an optimistic number")
    numbers = ", ".join(f"{k} {v:.4g}" for k, v in _numbers(result))
    return (f"- `{result['file']}` (split `{result['split']}`, crop {result['crop']}): {numbers}"
            + "".join(f"; **{c}**" for c in cautions))


def model_card(config: dict, preprocessor: dict, record: dict, results: list[dict], n_params: int) -> str:
    classifier = "id2label" in config
    pipeline_tag = "audio-classification" if classifier else "feature-extraction"
    kind = "AutoModelForAudioClassification" if classifier else "AutoModel"
    patch = f"{config['ast_kernel_size_time']}x{config['ast_kernel_size_chan']}"
    lines = ["---", "library_name: transformers", f"pipeline_tag: {pipeline_tag}",
             "license: # set the license of your weights and data here", "tags:", "- audio", "- mae-ast", "---", "",
             f"# MAE-AST {'classifier' if classifier else 'encoder'}", "",
             "Exported by `mae-ast-export-hf` (mae_ast " + str(config.get("mae_ast_version")) + ").", "",
             "## Architecture", "",
             f"- {config['encoder_layers']}-layer transformer encoder, width {config['encoder_embed_dim']}, "
             f"{config['encoder_attention_heads']} heads, FFN {config['encoder_ffn_embed_dim']}, "
             f"{'pre' if config['layer_norm_first'] else 'post'}-LN; {n_params / 1e6:.1f} M parameters",
             f"- tokens: {patch} patches of the spectrogram (time x mel channels), stride "
             f"{config['ast_kernel_stride_time']}x{config['ast_kernel_stride_chan']}; positions: "
             + (", ".join(n for n, on in (("sinusoidal", config["enc_sine_pos"]),
                                          ("convolutional", config["enc_conv_pos"])) if on) or "none")]
    if classifier:
        labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        lines.append(f"- head: mean over the clip's tokens, {config['head_norm']}, Linear to {len(labels)} classes "
                     f"({'sigmoid, multi-label' if config['multi_label'] else 'softmax'}): {', '.join(labels)}")
    lines += ["", "## Features", "",
              f"- Kaldi log-mel fbank, {config['num_mel_bins']} mel bins"
              f"{' + deltas + delta-deltas' if config['deltas'] else ''}, 25 ms povey window every 10 ms, "
              f"{config['sampling_rate']} Hz mono input in [-1, 1]",
              f"- padding value {preprocessor['padding_value']:.4g} (the input mean: reads as silence); "
              f"clips shorter than {preprocessor['min_frames']} frames are padded to one patch"]
    if classifier:
        lines.append(f"- each clip is cropped from its start or padded to {config['target_length']} frames")
    lines += ["", "## Training data", ""]
    lines += [f"- {k}: {v}" for k, v in (("task", record["task"]), ("data folder", record["data"]),
                                         ("manifests", ", ".join(record["manifests"] or []) or None),
                                         ("updates", record["updates"]), ("epoch", record["epoch"]),
                                         ("fine-tuned from", record["pretrained_checkpoint"])) if v is not None]
    lines += provenance_lines(record["provenance"])
    if results:
        lines += ["", "## Evaluation", ""]
        lines += [evaluation_line(result) for result in results]
    example = ("out = model(**inputs)\nscores = out.logits.softmax(-1)" if classifier and not config["multi_label"]
               else "out = model(**inputs)\nscores = out.logits.sigmoid()" if classifier
               else "out = model(**inputs, output_hidden_states=True)\nout.last_hidden_state, out.attention_mask")
    lines += ["", "## Loading (offline: torch, transformers and safetensors only)", "", "```python",
              f"from transformers import AutoFeatureExtractor, {kind}", "",
              'extractor = AutoFeatureExtractor.from_pretrained("PATH", trust_remote_code=True)',
              f'model = {kind}.from_pretrained("PATH", trust_remote_code=True).eval()',
              'inputs = extractor([wav], sampling_rate=16000, return_tensors="pt")', example, "```", ""]
    if not classifier:
        lines += ["To fine-tune: `AutoModelForAudioClassification.from_pretrained(\"PATH\", num_labels=K, "
                  "trust_remote_code=True)` keeps this encoder and initialises a new head.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("mae-ast-export-hf", __doc__)
    parser.add_argument("checkpoint",
                        help="MAE-AST checkpoint: pretraining (ours or released) or fine-tuned classifier")
    parser.add_argument("out_dir", help="folder to write (created; existing exported files are replaced)")
    parser.add_argument("--eval", action="append", default=[], metavar="RESULT.json",
                        help="a mae-ast-evaluate --json file whose numbers go into the model card (repeatable)")
    args = parser.parse_args(argv)
    check_output(parser, args.out_dir, "OUT_DIR", folder=True)  # before the checkpoint is loaded
    try:
        config = export(args.checkpoint, args.out_dir, args.eval)
    except (CheckpointError, remote_code.ExportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    kind = config["architectures"][0]
    extra = f", {len(config['id2label'])} classes" if "id2label" in config else ""
    auto = "AutoModelForAudioClassification" if extra else "AutoModel"
    print(f"{args.out_dir}: {kind} ({config['encoder_layers']} layers, {config['num_mel_bins']} mel bins{extra}); "
          f"load with {auto}.from_pretrained(..., trust_remote_code=True)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
