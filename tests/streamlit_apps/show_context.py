"""Test app: prints what the app sees of its request, one fact per element.

Tests read these lines through the Streamlit protocol (wsgate.doctor.streamlit_session).
"""

import json

import streamlit as st

st.text("app rendered")
st.text("ip_address=" + json.dumps(st.context.ip_address))
st.text("headers=" + json.dumps(sorted([k.lower(), v] for k, v in st.context.headers.items())))
