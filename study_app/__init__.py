"""Randomised real-vs-fake two-alternative forced-choice studies, hosted with Streamlit."""
