import streamlit as st

st.write("hello from behind the edge")
