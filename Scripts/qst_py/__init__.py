"""Shared pure-Python/NumPy helpers for QST's scripts (no torch, no transformers).

Modules:
  safetensors_np  -- read/write .safetensors (F32/F16/BF16/F64/int types) with NumPy only
  venv            -- re-exec a script under the QST venv if it was started with another Python
  gguf_to_hf      -- convert a llama-architecture GGUF into a Hugging Face folder (used by Scripts/fetch-model)
  qst4_container  -- the spec-only .qst4 reader (command line: Scripts/qst4_reader.py); crc32c -- its CRC-32C
  llamacpp_workers -- the timed llama.cpp runs of Scripts/bench_peer_llamacpp.py and their CPU accounting
"""
