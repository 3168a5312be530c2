# Sourced by the benchmark scripts that run the release tools on the NF4 SmolLM2-135M-Instruct (not run on its
# own), after Scripts/setup-env.sh, from the repository root. Sets QST_BIN (the release tools, built when it is not
# given), f32 (the F32 folder, fetched when missing) and nf4 ($QST_CACHE/bench/smollm2-nf4.qst4 with the default
# QLoRA policy, quantized when missing): the one copy of what each of those scripts did first.
if [ -z "${QST_BIN:-}" ]; then
    swift build -c release >&2
    QST_BIN="$(swift build -c release --show-bin-path)"
fi
f32="$QST_CACHE/models/SmolLM2-135M-Instruct-f32"
[ -f "$f32/model.safetensors" ] || f32=$(Scripts/fetch-model | sed -n 1p)
nf4="$QST_CACHE/bench/smollm2-nf4.qst4"
mkdir -p "$(dirname "$nf4")"
[ -f "$nf4" ] || "$QST_BIN/qst-quantize" "$f32" "$nf4" >&2
