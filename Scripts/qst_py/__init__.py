"""Shared pure-Python/NumPy helpers for QST's scripts (no torch, no transformers).

Modules:
  safetensors_np  -- read/write .safetensors (F32/F16/BF16/F64/int types) with NumPy only
  venv            -- re-exec a script under the QST venv if it was started with another Python
  gguf_to_hf      -- convert a llama-architecture GGUF into a Hugging Face folder (used by Scripts/fetch-model)
"""
