"""Chat providers: OpenAI and OpenAI-compatible servers, Anthropic, the local echo model.
All HTTP goes through one pooled client per process (adapters/providers/http.py)."""
