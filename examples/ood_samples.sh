#!/usr/bin/env bash
# Out-of-distribution jets for the anomaly scores (docs/DATA.md): H(174) -> hh with h at 20
# and at 80 GeV (h -> q qbar), and a top quark decaying through a 20 GeV "W", 3000 jets each,
# in the shipped sample's pT range, format and detector response. About 5 minutes on 2 cores.
#
#     bash examples/ood_samples.sh [OUTPUT_DIR]     (default hepsafe/data)
set -euo pipefail
out="${1:-hepsafe/data}"
hepsafe generate -o "$out/ood.root" --n-qcd 0 --n-w 0 --n-top 0 --seed 21 --workers 2 \
    --ood hh20=3000 --ood hh80=3000 --ood top_w20=3000
