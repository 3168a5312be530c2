#!/usr/bin/env bash
# Prepares everything QST's tests and helper scripts need, idempotently.
#
#   source Scripts/setup-env.sh   # also exports QST_CACHE and QST_PYTHON into the calling shell
#   bash Scripts/setup-env.sh     # just installs; prints the python path on stdout
#
# - apt: libopenblas-dev, libzstd-dev, libopenmpi-dev + openmpi-bin (data-parallel qst-tune and its tests;
#   the tools load libmpi at run time only under mpirun) — only if dpkg says they are missing
# - venv: $QST_CACHE/venv with numpy, gguf, tokenizers, openai (only the ones not already importable)
# Quiet on success; errors go to stderr and the function returns non-zero.

_qst_setup_env() {
    local cache="${QST_CACHE:-$HOME/.cache/qst}"
    local venv="$cache/venv"
    local py="$venv/bin/python"
    mkdir -p "$cache" || return 1

    local missing=() pkg
    for pkg in libopenblas-dev libzstd-dev libopenmpi-dev openmpi-bin; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq >/dev/null || { echo "setup-env: apt-get update failed" >&2; return 1; }
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
            || { echo "setup-env: apt-get install ${missing[*]} failed" >&2; return 1; }
    fi

    if [ ! -x "$py" ]; then
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            # Debian's own python3 ships venv/ensurepip separately.
            rm -rf "$venv"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null 2>&1 \
                || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
            python3 -m venv "$venv" || { echo "setup-env: cannot create venv at $venv" >&2; return 1; }
        fi
    fi

    # Import name -> pip requirement. Versions are floors known to work, not exact pins,
    # so a machine with a newer wheel cache still resolves offline-friendly.
    local want=()
    "$py" -c "import numpy" 2>/dev/null || want+=("numpy>=1.24")
    "$py" -c "import gguf" 2>/dev/null || want+=("gguf>=0.10")
    "$py" -c "import tokenizers" 2>/dev/null || want+=("tokenizers>=0.19")
    "$py" -c "import safetensors" 2>/dev/null || want+=("safetensors>=0.4")
    "$py" -c "import jinja2" 2>/dev/null || want+=("jinja2>=3")
    # The official OpenAI client, for qst-serve's tests and Scripts/bench-serve.
    "$py" -c "import openai" 2>/dev/null || want+=("openai>=1.30")
    if [ "${#want[@]}" -gt 0 ]; then
        "$py" -m pip install -q --disable-pip-version-check "${want[@]}" >/dev/null \
            || { echo "setup-env: pip install ${want[*]} failed" >&2; return 1; }
    fi

    export QST_CACHE="$cache"
    export QST_PYTHON="$py"
    return 0
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # Sourced: never `exit` the caller's shell.
    _qst_setup_env
else
    set -euo pipefail
    _qst_setup_env
    echo "$QST_PYTHON"
fi
