"""Smallest Streamlit app for the logs tests."""

import streamlit as st

st.write("hello from the logs test app")
