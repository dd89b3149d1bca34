"""Test app: prints how many sessions its Streamlit server holds open right now.

The admission tests read it directly at the origin (through the guard, with the secret)
to check what the origin really holds, whatever the edge says. `_session_mgr` is
Streamlit's own count of connected sessions; there is no public API for it.
"""

import streamlit as st
from streamlit.runtime import Runtime

st.text(f"active_sessions={Runtime.instance()._session_mgr.num_active_sessions()}")
