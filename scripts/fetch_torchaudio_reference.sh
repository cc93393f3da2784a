#!/usr/bin/env bash
# Unpack torchaudio's pure-Python reference modules (compliance/kaldi.py and
# functional/functional.py) into .cache/torchaudio_ref, without installing torchaudio
# (no release matches current torch). Tests load them as the fbank/resample reference.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.cache/torchaudio_ref
[ -f "$DEST/kaldi.py" ] && exit 0
TMP=$(mktemp -d)
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d "$TMP" torchaudio==2.9.1
mkdir -p "$DEST"
.venv/bin/python - "$TMP" "$DEST" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/torchaudio-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name, out in [("torchaudio/compliance/kaldi.py", "kaldi.py"),
                      ("torchaudio/functional/functional.py", "functional.py")]:
        open(f"{sys.argv[2]}/{out}", "wb").write(z.read(name))
PY
rm -rf "$TMP"
