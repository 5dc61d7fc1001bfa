#!/usr/bin/env bash
# Pseudo-data samples with alternative physics settings (W and QCD, 5000 jets each, the
# shipped sample's format and detector response), for closure tests of the adversarial
# bands against a real mismodelling. About 3 minutes per sample on 2 cores.
#
#     bash examples/alternative_samples.sh [OUTPUT_DIR]     (default hepsafe/data)
#
# fsr_low / fsr_high: final-state shower alpha_S(m_Z) 0.120 / 0.150 (Pythia's default 0.1365);
# lund: Lund fragmentation function a = 0.50, b = 0.80 (defaults 0.68, 0.98).
set -euo pipefail
out="${1:-hepsafe/data}"
gen() { hepsafe generate -o "$out/$1.root" --n-qcd 5000 --n-w 5000 --n-top 0 --seed "$2" \
          --workers 2 "${@:3}"; }
gen alt_fsr_low 11 --set "TimeShower:alphaSvalue = 0.120"
gen alt_fsr_high 12 --set "TimeShower:alphaSvalue = 0.150"
gen alt_lund 13 --set "StringZ:aLund = 0.50" --set "StringZ:bLund = 0.80"
