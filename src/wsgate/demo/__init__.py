"""`wsgate demo`: a guarded sample Streamlit app behind the edge, in one command.

`app.py` is the bundled sample app (a module inside the package, so it ships in
every wheel); `stack.py` starts and stops the processes; `command.py` is the CLI.
"""
