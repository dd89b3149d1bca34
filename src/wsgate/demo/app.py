"""The sample app that `wsgate demo` serves behind the edge.

Every widget interaction is a WebSocket round trip (the browser sends a rerun
message, the server streams the new page back), so if this app reacts, the
WebSocket works through every hop. It shows which forwarded headers arrived,
read one by one: the guard has already removed the secret, and this app never
prints headers wholesale anyway.
"""

from __future__ import annotations

import math

import streamlit as st

st.set_page_config(page_title="wsgate demo", page_icon="🔐", layout="centered")

st.title("wsgate demo")
st.write(
    "This page reached you through **wsgate edge**, which adds the shared secret. "
    "The origin (**wsgate run**) refuses anyone who comes without it."
)

if "clicks" not in st.session_state:
    st.session_state.clicks = 0

left, right = st.columns([1, 2], vertical_alignment="center")
with left:
    # The click handler runs on the server: the new count can only appear after
    # a full WebSocket round trip.
    if st.button("Increment", type="primary", width="stretch"):
        st.session_state.clicks += 1
with right:
    st.metric("Counter", st.session_state.clicks)

st.subheader("A chart redrawn by the server")
frequency = st.slider("Frequency", min_value=1, max_value=10, value=3)
xs = [i / 20 for i in range(201)]
st.line_chart(
    {
        "x": xs,
        "sin": [math.sin(frequency * x) for x in xs],
        "damped": [math.exp(-x / 4) * math.cos(frequency * x) for x in xs],
    },
    x="x",
    height=260,
)
# Rendered by the server after the slider's rerun: proof of the round trip.
st.caption(f"Drawn by the server for frequency {frequency}.")

headers = st.context.headers
with st.expander("What the origin received from the edge"):
    st.table(
        {
            "header": ["X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id"],
            "value": [
                headers.get("X-Forwarded-Host", "(none)"),
                headers.get("X-Forwarded-Proto", "(none)"),
                headers.get("X-Request-Id", "(none)"),
            ],
        }
    )
    st.caption("The secret header is removed by the guard before the app runs.")
