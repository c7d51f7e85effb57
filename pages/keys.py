"""Keys: a user's ingest keys, the write keys training machines use instead of the service-role key."""

from __future__ import annotations

import streamlit as st

from predictions.dashboard import forms, router


def main() -> None:
    view = router.current_view()
    st.title("Ingest keys")
    st.caption(
        "A training machine writes your runs with the anon key and one of these keys "
        "(PREDICTIONS_INGEST_KEY): it can write as you and nothing else. Revoke a key when its "
        "machine is retired or the key leaks."
    )
    keys = forms.key_manager(view.store)
    if keys is None:
        return
    forms.create_key_form(keys)
    st.subheader("Your keys")
    forms.revoke_form(keys, forms.keys_table(keys))


main()
