"""Asking a saved model things: `decovlm chat` (interactive, streaming) and `decovlm predict` (a JSONL file).

Both prompt through the processor (the chat template saved with the model), like training, eval,
serve and explain.
"""
