"""Predictions Monitor: `streamlit run app.py`. Runs the router: the page list, the shared sidebar, the store.

The router (`predictions/dashboard/router.py`) declares the pages of `pages/`, draws the sidebar, leaves
the `View` every page reads and runs the page the URL names (`/samples?job=<id>`), so a link opens the
same view. It lives in the package so that a page Streamlit runs without this file can route too.
"""

from __future__ import annotations

from predictions.dashboard import router

router.run()
