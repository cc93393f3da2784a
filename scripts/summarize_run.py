"""Print a summary of a fairseq-hydra-train run: losses at the start and end, the
validation loss, the realised mask ratio, and the checkpoint it wrote.

    python scripts/summarize_run.py RUN_DIR
"""

import json
import os
import re
import sys


def read_log(path: str) -> list[tuple[str, dict]]:
    rows = []
    for line in open(path, encoding="utf-8"):
        match = re.search(r"\]\[(train_inner|train|valid)\]\[INFO\] - (\{.*\})\s*$", line)
        if match:
            rows.append((match.group(1), json.loads(match.group(2))))
    return rows


def main(run_dir: str) -> int:
    log = os.path.join(run_dir, "hydra_train.log")
    rows = read_log(log)
    inner = [r for tag, r in rows if tag == "train_inner"]
    valid = [r for tag, r in rows if tag == "valid"]
    if not inner:
        print(f"{log}: no training progress logged", file=sys.stderr)
        return 1
    first, last = inner[0], inner[-1]
    print(f"\nMAE-AST demo run: {run_dir}")
    print(f"{'':14}{'update':>8}{'loss':>9}{'recon':>9}{'infoNCE':>9}{'nce_acc':>9}{'mask':>7}")
    for name, r in [("first logged", first), ("last logged", last)]:
        print(f"{name:14}{r['num_updates']:>8}{r['loss']:>9}{r['loss_recon']:>9}"
              f"{r['loss_info_nce']:>9}{r['nce_acc']:>9}{r['mask_ratio']:>7}")
    for r in valid:
        print(f"{'valid':14}{r['valid_num_updates']:>8}{r['valid_loss']:>9}{r['valid_loss_recon']:>9}"
              f"{r['valid_loss_info_nce']:>9}{r['valid_nce_acc']:>9}{r['valid_mask_ratio']:>7}")
    ckpt = os.path.join(run_dir, "checkpoints", "checkpoint_last.pt")
    if os.path.exists(ckpt):
        print(f"checkpoint: {ckpt} ({os.path.getsize(ckpt) / 1e6:.0f} MB)")
    else:
        print("no checkpoint written", file=sys.stderr)
        return 1
    print("(losses in bits, as fairseq logs them; mask = realised masked fraction)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"))
