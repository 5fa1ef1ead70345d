"""Evaluation of fine-tuned models: judged win rates, benchmark tasks and text statistics.

Submodules are imported explicitly (``from symnoise.evaluate import stats``) so that
importing this package stays cheap and pulls in no model or network code.
"""
