"""A signed-in dashboard session that lasts across reloads, shared links and new tabs, and ends
everywhere on sign-out: the session's tokens kept in a cookie of this browser.

Streamlit reads cookies (`st.context.cookies`, those the page was opened with) but cannot set one in
a response, so the page sets and clears it with a script (`st.html`). The cookie is first-party,
`SameSite=Strict` (never sent by another site's link or form), `Secure` on https, for the dashboard's
path, and lasts a week at most; every string a job writes is shown as text, so no job can run a script
that reads it. A new tab or a reload resumes the session from it; a sign-out ends the session in
Supabase Auth for every tab (scope global) and clears the cookie, and another tab finds its session
gone on its next run (a live tab at its next poll). Streamlit's built-in `st.login` was not used: it
signs in through an OpenID Connect provider configured in `secrets.toml`, while a team's Supabase
project signs people in with email and password, which is what the store's row-level security keys on.
"""

from __future__ import annotations

import json

import streamlit as st

from predictions.errors import AuthError
from predictions.store.protocol import SignIn

COOKIE = "predictions_session"
MAX_AGE_S = 7 * 24 * 3600
KEPT = "_predictions_cookie"
"""The cookie value this browser session last wrote (or opened with)."""
CLEAR = "_predictions_clear_cookie"


def resume(account: SignIn) -> None:
    """Sign the store in with the session this browser kept, if it has one that is still alive."""
    value = st.context.cookies.get(COOKIE)
    if not isinstance(value, str):  # no cookie (or no browser: AppTest has no request to read)
        return
    access, _, refresh = value.partition("~")
    if not (access and refresh):
        return
    try:
        account.resume(access, refresh)
    except AuthError:  # ended elsewhere, or expired: the sign-in form asks, and the cookie goes
        st.session_state[CLEAR] = True
        return
    st.session_state[KEPT] = value


def keep(account: SignIn) -> None:
    """Write the session's current tokens into the cookie when they changed (a sign-in, a refresh)."""
    tokens = account.session_tokens()
    value = "~".join(tokens) if tokens else None
    if value is None or st.session_state.get(KEPT) == value:
        return
    _cookie_script(f"{COOKIE}=" + value + f"; max-age={MAX_AGE_S}")
    st.session_state[KEPT] = value


def end(account: SignIn) -> str | None:
    """Sign out everywhere and forget the cookie; the message to show when only this tab could."""
    st.session_state[CLEAR] = True
    st.session_state.pop(KEPT, None)
    try:
        account.sign_out()
    except AuthError as error:
        return str(error)
    return None


def clear_if_ended() -> None:
    """Clear the cookie once its session has ended (on the run after a sign-out, or a dead cookie)."""
    if st.session_state.pop(CLEAR, False):
        _cookie_script(f"{COOKIE}=; max-age=0")


def _cookie_script(assignment: str) -> None:
    attributes = "; path=/; samesite=strict"
    script = (
        f"<script>document.cookie = {json.dumps(assignment + attributes)}"
        " + (location.protocol === 'https:' ? '; secure' : '');</script>"
    )
    st.html(script, unsafe_allow_javascript=True, width=1)
