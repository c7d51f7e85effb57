"""What `app.py` and `pages/` share: cached queries, chart builders, pure pandas helpers and widgets.

Pages only orchestrate; everything here is importable without torch or transformers, and nothing
queries a store at import time.
"""
