"""The model mesh (as KServe ModelMesh): a pool service runs N model servers that load and unload many small pool
models on demand. `placement.py` decides which model is loaded where (pure); the placer that acts on it lives
beside it."""
