"""Dashboard API: FastAPI app serving clinicians, patients, researchers and operators."""
